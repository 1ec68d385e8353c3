"""The job queue: Huey carries job ids; the work and its state live in the job rows.

One task, `advance(job_id)`, does whatever a job needs next and schedules itself again
when the job must wait (a `run_at`, records not yet old enough). A periodic `sweep`, once
a minute and when a worker starts, queues jobs whose `run_at` has come and jobs whose
worker died (their lease expired), so that no lost task or killed worker leaves a job
stuck; it also completes the Redact API's redactions that a process which is gone
acknowledged but did not scrub (models/erasure/settling.py). A periodic `retention` task
runs the Auto-redact pass (models/erasure/retention.py), and `tree_heads` signs a tree head
of every erasure log that grew (models/proof/heads.py). The consumer delivers the webhook
outbox too (models/webhooks/delivery.py's Dispatcher, a thread).

Storage: an SQLite file on the embedded default, Redis in scale-out (REDACT_QUEUE_URL).
"""

from __future__ import annotations

import datetime
import logging
import os
import socket
import threading

import huey
import huey.consumer
import redis
from huey import crontab

from models.erasure.retention import run_retention
from models.erasure.settling import settle_left
from models.jobs.errors import QueueUnavailable
from models.jobs.finish import finish_cancel
from models.jobs.lease import (
    LeaseLost,
    Wait,
    WorkConfig,
    claim,
    mark_queued,
    release,
    start_scheduled_run,
    sweep,
)
from models.jobs.run import run
from models.jobs.validation import validate
from models.proof.heads import sign_grown_logs
from models.store.base import Clock, database, utcnow
from models.store.schedule import SCHEDULE_HOUR, SCHEDULE_MINUTE
from models.store.state import current_store
from models.webhooks.delivery import DeliveryConfig, Dispatcher
from models.worker.maintenance import vacuum_erased

logger = logging.getLogger("redact.worker.queue")

LEFT_PENDING_SECONDS = 60
"""An acknowledged redaction still unscrubbed this long after was left by a process that is
gone (its own writer completes it within a commit)."""

RETENTION_SLICE_SECONDS = 10.0
"""How long a retention task works before it queues the rest behind other tasks."""


def advance(
    job_id: str, *, owner: str, clock: Clock, config: WorkConfig
) -> datetime.datetime | None:
    """Do whatever the job needs next, if no other worker holds it: validate it, run it
    (also when it became ready with a `run_at` that has come), or finish its cancellation.
    Returns when to come back, or None."""
    job = claim(job_id, owner, clock(), config)
    if job is None:
        return None
    come_back: datetime.datetime | None = None
    try:
        if job.status == "ready":  # claimed only when its run_at has come
            job = start_scheduled_run(job)
        if job.status in ("created", "validating"):
            job = validate(job, owner=owner, clock=clock, config=config)
            if job.status == "ready" and job.run_at is not None:
                if job.run_at > clock():
                    come_back = job.run_at
                else:
                    job = start_scheduled_run(job)
        if job.status == "redacting":
            come_back = run(job, owner=owner, clock=clock, config=config)
        elif job.status == "canceling":
            finish_cancel(job, clock())
    except Wait as wait:
        come_back = wait.until
    except LeaseLost:
        return None
    release(job, owner, come_back)
    return come_back


def make_huey(url: str) -> tuple[huey.Huey, redis.ConnectionPool | None]:
    """A Huey instance on `url` (sqlite:///path or redis://...), and its Redis connection
    pool if it has one."""
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        return huey.SqliteHuey("redact-jobs", filename=path, results=False), None
    # Timeouts so that a hung Redis is reported, not waited on (above the consumer's
    # one-second blocking read).
    pool = redis.ConnectionPool.from_url(url, socket_timeout=5, socket_connect_timeout=2)
    return huey.RedisHuey("redact-jobs", connection_pool=pool, results=False), pool


class JobQueue:
    """The queue of one store: `url` is where Huey keeps its tasks, `max_depth` the most
    it takes (REDACT_MAX_QUEUE_DEPTH), `vacuum` schedules PostgreSQL's daily maintenance."""

    def __init__(
        self,
        url: str,
        *,
        config: WorkConfig,
        max_depth: int,
        vacuum: bool = False,
        clock: Clock = utcnow,
        webhooks: DeliveryConfig | None = None,
    ):
        self.clock = clock
        self.config = config
        self.webhooks = webhooks or DeliveryConfig()
        self.max_depth = max_depth
        self.huey, self._pool = make_huey(url)
        self._advance = self.huey.task(name="advance", retries=3, retry_delay=5)(self._advance_job)
        self.huey.periodic_task(crontab(minute="*"), name="sweep")(self.sweep)
        # Auto-redact: a pass every minute, in slices (a slice that leaves work queues the
        # next one behind whatever was queued meanwhile, so jobs are not kept waiting).
        self._retention = self.huey.periodic_task(crontab(minute="*"), name="retention")(
            self.retention
        )
        # The erasure log: a signed tree head at least every minute while entries arrive.
        self.huey.periodic_task(crontab(minute="*"), name="tree_heads")(self.sign_tree_heads)
        if vacuum:
            # Daily, so that dead row versions holding scrubbed values do not linger.
            self.huey.periodic_task(
                crontab(minute=str(SCHEDULE_MINUTE), hour=str(SCHEDULE_HOUR)), name="vacuum"
            )(self.vacuum)

    @property
    def owner(self) -> str:
        """Names this worker thread in a job's lease (the process id as of now: workers
        are forked)."""
        return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"

    # -- producing

    def depth(self) -> int:
        """Tasks waiting in the queue (scheduled ones excluded: they wait by design)."""
        try:
            return self.huey.pending_count()
        except Exception as exc:
            raise QueueUnavailable(f"the job queue is unreachable: {type(exc).__name__}") from exc

    def reachable(self) -> bool:
        try:
            self.depth()
            return True
        except QueueUnavailable:
            return False

    def check_room(self) -> None:
        """QueueUnavailable if the queue holds REDACT_MAX_QUEUE_DEPTH tasks already."""
        if self.depth() >= self.max_depth:
            raise QueueUnavailable("the job queue is full")

    def submit(self, job_id: str, eta: datetime.datetime | None = None) -> None:
        """Queue `advance(job_id)`, at `eta` if given; QueueUnavailable if it cannot."""
        try:
            if eta is None:
                mark_queued([job_id], self.clock(), self.config)
                self._advance(job_id)
            else:
                naive = eta.astimezone(datetime.UTC).replace(tzinfo=None)
                self._advance.schedule(args=(job_id,), eta=naive)
        except QueueUnavailable:
            raise
        except Exception as exc:
            raise QueueUnavailable(f"the job queue is unreachable: {type(exc).__name__}") from exc

    def close(self) -> None:
        """Close the queue's connections (opened again on the next use)."""
        self.huey.storage.close()
        if self._pool is not None:
            self._pool.disconnect()

    # -- consuming

    def _advance_job(self, job_id: str) -> None:
        with database.connection_context():
            self.run_now(job_id)

    def run_now(self, job_id: str) -> None:
        """Advance the job in this thread, and queue its next step if it must wait."""
        come_back = advance(job_id, owner=self.owner, clock=self.clock, config=self.config)
        if come_back is not None:
            self.submit(job_id, eta=come_back)

    def sweep(self) -> list[str]:
        """Queue the jobs that are due or whose worker is gone; complete the redactions
        left pending by a process that is gone."""
        with database.connection_context():
            due = sweep(self.clock(), self.config)
            for job_id in due:
                self.submit(job_id)
        if due:
            logger.info("sweep queued %d job(s)", len(due))
        settle_left(self.clock() - datetime.timedelta(seconds=LEFT_PENDING_SECONDS))
        return due

    def retention(self, budget_seconds: float | None = RETENTION_SLICE_SECONDS):
        """One slice of the retention pass (models/erasure/retention.py); None if another worker's
        pass is under way."""
        with database.connection_context():
            report = run_retention(
                clock=self.clock,
                min_age_seconds=self.config.min_age_seconds,
                batch_size=self.config.batch_size,
                owner=self.owner,
                budget_seconds=budget_seconds,
                lease_seconds=self.config.lease_seconds,
            )
        if report is None:
            return None
        if report.redacted or report.held:
            logger.info(
                "retention redacted %d record(s), %d held",
                report.redacted,
                report.held,
                extra={"fields": {"redacted": report.redacted, "held": report.held}},
            )
        if not report.finished:
            self._retention()
        return report

    def sign_tree_heads(self) -> int:
        """Sign a tree head for every account whose erasure log grew since its last."""
        key = current_store().signing_key
        if key is None:
            logger.warning("no signing key (REDACT_SIGNING_KEY): tree heads are not signed")
            return 0
        with database.connection_context():
            return sign_grown_logs(key, self.clock())

    def vacuum(self) -> list[str]:
        tables = vacuum_erased(database.obj)
        current_store().keystore.vacuum()  # the destroyed keys' old row versions
        logger.info("vacuumed %s and the key store", ", ".join(tables))
        return tables

    def consumer(self, workers: int) -> huey.consumer.Consumer:
        """Huey's consumer with `workers` threads (and the periodic sweep), and the
        webhook dispatcher, which starts and stops with it."""
        consumer = _Consumer(
            self.huey,
            workers=workers,
            worker_type="thread",
            periodic=True,
            initial_delay=0.05,
            max_delay=1.0,
            check_worker_health=True,
        )
        consumer.dispatcher = Dispatcher(self.clock, self.webhooks)
        return consumer

    def drain(self) -> int:
        """Run every task that is queued or due by the queue's clock, in this thread,
        until none is left (tests); returns how many ran."""
        ran = 0
        while True:
            now = self.clock().astimezone(datetime.UTC).replace(tzinfo=None)
            tasks = self.huey.read_schedule(now)
            task = self.huey.dequeue()
            if task is not None:
                tasks.append(task)
            if not tasks:
                return ran
            for task in tasks:
                self.huey.execute(task, now)
                ran += 1


class _Consumer(huey.consumer.Consumer):
    """Huey's consumer, running the webhook dispatcher beside its workers: a thread that
    looks at the outbox every few seconds (a periodic task runs at most once a minute,
    and would hold one of the job workers while an endpoint is slow)."""

    dispatcher: Dispatcher

    def start(self) -> None:
        super().start()
        self.dispatcher.start()

    def stop(self, graceful: bool = False) -> None:
        self.dispatcher.stop()
        super().stop(graceful)
