"""The job queue: Huey carries job ids; the work and its state live in the job rows
(models/job_work.py).

One task, `advance(job_id)`, does whatever a job needs next and schedules itself again
when the job must wait (a `run_at`, records not yet old enough). A periodic `sweep`, once
a minute and when a worker starts, queues jobs whose `run_at` has come and jobs whose
worker died (their lease expired), so that no lost task or killed worker leaves a job
stuck.

Storage: an SQLite file on the embedded default, Redis in scale-out (REDACT_QUEUE_URL).
"""

from __future__ import annotations

import datetime
import logging
import os
import socket
import threading
from collections.abc import Callable

import huey
import redis
from huey import crontab

from models import database
from models.job import RedactionJob, create_job, delete_job, move, start_validation, undo_move
from models.job_work import WorkConfig, advance, mark_queued, sweep
from models.maintenance import vacuum_erased

from .settings import Settings

log = logging.getLogger("redact.jobs")


class QueueUnavailable(Exception):
    """The queue cannot take the work now (its storage is down or the queue is full)."""


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def make_huey(url: str) -> huey.Huey:
    """A Huey instance on `url`: sqlite:///path or redis://..."""
    if url.startswith("sqlite:///"):
        return huey.SqliteHuey("redact-jobs", filename=url[len("sqlite:///") :], results=False)
    # Timeouts so that a hung Redis is reported, not waited on (above the consumer's
    # one-second blocking read).
    pool = redis.ConnectionPool.from_url(url, socket_timeout=5, socket_connect_timeout=2)
    return huey.RedisHuey("redact-jobs", connection_pool=pool, results=False)


class JobQueue:
    def __init__(self, settings: Settings, clock: Callable[[], datetime.datetime] = utcnow):
        self.settings = settings
        self.clock = clock
        self.config = WorkConfig(
            min_age_seconds=settings.min_age_seconds,
            batch_size=settings.job_batch_size,
            lease_seconds=settings.job_lease_seconds,
        )
        self.huey = make_huey(settings.effective_queue_url)
        self._advance = self.huey.task(name="advance", retries=3, retry_delay=5)(self._advance_job)
        self.huey.periodic_task(crontab(minute="*"), name="sweep")(self.sweep)
        if not settings.database_url.startswith("sqlite"):
            # Daily, so that dead row versions holding scrubbed values do not linger.
            self.huey.periodic_task(crontab(minute="15", hour="3"), name="vacuum")(self.vacuum)

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
        if self.depth() >= self.settings.max_queue_depth:
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

    def create(self, **fields) -> tuple[RedactionJob, bool]:
        """Store a job (models.job.create_job: `fields`, admitted only if the queue has
        room) and queue its validation; if the queue cannot take it, the job is removed
        again and QueueUnavailable raised. Returns (job, created)."""
        job, created = create_job(**fields, admit=self.check_room)
        if not created:
            return job, False
        try:
            self.submit(job.id)
        except QueueUnavailable:
            delete_job(job)
            raise
        return start_validation(job), True

    def apply(self, job: RedactionJob, action: str, *, here: bool = False) -> RedactionJob:
        """Apply a client's move (models.job.move) and queue the work it starts; if the
        queue cannot take it, the move is undone and QueueUnavailable raised. With `here`,
        the work is done in this thread instead (small jobs, synchronously)."""
        moved = move(job, action)
        if here:
            self.run_now(moved.id)
        else:
            try:
                self.submit(moved.id)
            except QueueUnavailable:
                undo_move(job, moved)
                raise
        return RedactionJob.get_by_id(moved.seq)

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
        """Queue the jobs that are due or whose worker is gone."""
        with database.connection_context():
            due = sweep(self.clock(), self.config)
            for job_id in due:
                self.submit(job_id)
        if due:
            log.info("sweep queued %d job(s)", len(due))
        return due

    def vacuum(self) -> list[str]:
        tables = vacuum_erased(database.obj)
        log.info("vacuumed %s", ", ".join(tables))
        return tables

    def consumer(self, workers: int) -> huey.consumer.Consumer:
        """Huey's consumer with `workers` threads (and the periodic sweep)."""
        return self.huey.create_consumer(
            workers=workers,
            worker_type="thread",
            periodic=True,
            initial_delay=0.05,
            max_delay=1.0,
            check_worker_health=True,
        )

    def drain(self) -> int:
        """Run every task that is queued or due by the queue's clock, in this thread,
        until none is left (tests and `redact jobs run --wait`); returns how many ran."""
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
