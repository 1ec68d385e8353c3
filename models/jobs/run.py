"""Running a job: its records redacted in batches, each atomic with the job's progress.

A record is redacted at most once (the scrub only touches unredacted rows, and the run's
cursor moves with it), so the counts and the audit trail stay exact. A run never holds
more than one batch of records in memory.

A run redacts every record that may be redacted now. Premature records (younger than
the premature window) wait: a named transaction is marked `waiting` and tried again by
the next run, a subject stays undone; the job shows how many records wait and when the
last of them comes of age, and the run goes on then.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Collection
from typing import Any

from peewee import fn

from models.erasure.held import held_condition
from models.erasure.redaction import RedactionRequest, redact_batch
from models.errors import PrematureRedaction
from models.jobs.finish import finish_run
from models.jobs.job import JobLogRange, JobObject, RedactionJob
from models.jobs.lease import LeaseLost, Wait, WorkConfig, renew
from models.jobs.records import OBJECTS_AFTER, subject_records
from models.records.account import Account
from models.records.transaction import Transaction
from models.store.base import Clock, database
from models.store.state import current_store


@dataclasses.dataclass
class _Batch:
    """One atomic step of a run: redact `requests` (for the job's transaction objects at
    `positions`, if they are that), then move the job's cursor to `cursor` (transaction
    objects) or mark `subject_done` (a subject with no more records); with the job's
    counts, in the same transaction. `waits` receives when each premature record of the
    batch comes of age."""

    job: RedactionJob
    owner: str
    now: datetime.datetime
    config: WorkConfig
    requests: list[RedactionRequest]
    positions: list[int] | None = None
    cursor: int | None = None
    subject_done: int | None = None
    waits: list[datetime.datetime] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class _Run:
    """One run of a job: who runs it, on which clock and settings, for which products;
    and what it found premature (how many records, when the last comes of age)."""

    job: RedactionJob
    owner: str
    clock: Clock
    config: WorkConfig
    products: Collection[str]
    waiting: int = 0
    until: datetime.datetime | None = None

    def wait_for(self, count: int, moment: datetime.datetime) -> None:
        self.waiting += count
        if self.until is None or moment > self.until:
            self.until = moment


def run(
    job: RedactionJob, *, owner: str, clock: Clock, config: WorkConfig
) -> datetime.datetime | None:
    """Redact every record of the job that may be redacted now, batch by batch, from where
    its row says the last run stopped. If some are premature, the job is marked waiting
    (how many, and when the last comes of age) and that moment returned: when to come
    back. Otherwise mark it succeeded and forget its numbers, and return None."""
    job_run = _Run(job, owner, clock, config, Account.get_by_id(job.account_id).product_set)

    after = -1
    while True:  # the named transactions an earlier run found premature
        objects: list[Any] = list(
            JobObject.select(
                JobObject.position, JobObject.transaction_id, JobObject.product, JobObject.direction
            )
            .where(
                (JobObject.job == job.seq)
                & (JobObject.waiting == True)  # noqa: E712 (a peewee expression)
                & (JobObject.position > after)
            )
            .order_by(JobObject.position)
            .limit(config.batch_size)
            .tuples()
        )
        if not objects:
            break
        _redact_objects(job_run, objects)
        after = objects[-1][0]

    while True:  # the named transactions, from the cursor on
        objects = OBJECTS_AFTER.execute(
            None, {"job": job.seq, "after": job.cursor, "limit": config.batch_size}
        ).fetchall()
        if not objects:
            break
        _redact_objects(job_run, objects, cursor=objects[-1][0])
        job.cursor = objects[-1][0]

    # Read whole before the first commit: on SQLite an open read cursor would hold the
    # lock the writer's commit needs (see GroupCommit.run).
    subjects = list(
        JobObject.select().where(
            (JobObject.job == job.seq)
            & JobObject.subject_key.is_null(False)
            & (JobObject.done == False)  # noqa: E712 (a peewee expression)
        )
    )
    for subject in subjects:
        _erase_subject(job_run, subject)

    if job_run.until is not None:
        _record_waiting(job_run)
        return job_run.until
    finish_run(job, clock())
    return None


def _redact_objects(job_run: _Run, objects: list, cursor: int | None = None) -> None:
    """Redact the records a batch of transaction objects names (position, id, product,
    direction), noting those that wait."""
    now = job_run.clock()
    batch = _Batch(
        job_run.job,
        job_run.owner,
        now,
        job_run.config,
        [
            _request(job_run, now, transaction_id, product, direction or None)
            for _, transaction_id, product, direction in objects
        ],
        positions=[position for position, _, _, _ in objects],
        cursor=cursor,
    )
    _commit(batch)
    for moment in batch.waits:
        job_run.wait_for(1, moment)


def _record_waiting(job_run: _Run) -> None:
    """Show on the job what waits, its lease renewed in the same transaction."""
    job = job_run.job
    with database.atomic():
        renew(job, job_run.owner, job_run.clock(), job_run.config)
        RedactionJob.update(waiting_records=job_run.waiting, waiting_until=job_run.until).where(
            RedactionJob.seq == job.seq
        ).execute()


def _erase_subject(job_run: _Run, subject) -> None:
    """Redact the records about one subject's number that may be redacted now, batch by
    batch; then mark it done, or note that its other records wait."""
    job, products, config = job_run.job, job_run.products, job_run.config
    min_age = datetime.timedelta(seconds=config.min_age_seconds)
    while True:
        now = job_run.clock()
        records: list[Any] = list(
            Transaction.select(Transaction.id, Transaction.product, Transaction.direction)
            .where(
                subject_records(job, subject.subject_key)
                & Transaction.product.in_(sorted(products))
                & (Transaction.created_at <= now - min_age)
                & ~held_condition(job.account_id)  # left alone (they would come back)
            )
            .limit(config.batch_size)
            .tuples()
        )
        if records:
            _commit(
                _Batch(
                    job,
                    job_run.owner,
                    now,
                    config,
                    [
                        _request(job_run, now, tid, product, direction)
                        for tid, product, direction in records
                    ],
                )
            )
            continue
        left: Any = (
            Transaction.select(fn.COUNT(Transaction.id), fn.MAX(Transaction.created_at))
            .where(
                subject_records(job, subject.subject_key)
                & Transaction.product.in_(sorted(products))
                & ~held_condition(job.account_id)
            )
            .tuples()
            .get()
        )
        premature, newest = left
        if premature:  # too young yet (some may have arrived after validation)
            job_run.wait_for(premature, Transaction.created_at.python_value(newest) + min_age)
            return
        _commit(_Batch(job, job_run.owner, now, config, [], subject_done=subject.position))
        return


def _request(
    job_run: _Run, now: datetime.datetime, transaction_id: str, product: str, direction: str | None
) -> RedactionRequest:
    return RedactionRequest(
        job_run.job.account_id,
        transaction_id,
        product,
        direction,
        now,
        job_run.config.min_age_seconds,
        job_run.job.id,
        "job",
    )


def _commit(batch: _Batch) -> None:
    """Run one batch in a shared transaction (it takes its turn with the API's
    redactions, see GroupCommit); Wait and LeaseLost reach the caller."""
    current_store().group_commit.run(_run_batches, batch)


def _run_batches(batches: list[_Batch]) -> list:
    outcomes: list[Wait | LeaseLost | None] = []
    for batch in batches:
        try:
            # A savepoint per batch: one that stops leaves the others of the shared
            # transaction (API redactions, other jobs) untouched.
            with database.atomic():
                _run_batch(batch)
            outcomes.append(None)
        except (Wait, LeaseLost) as exc:
            outcomes.append(exc)
    return outcomes


def _run_batch(batch: _Batch) -> None:
    job = batch.job
    renew(job, batch.owner, batch.now, batch.config)
    redacted = already = skipped = 0
    positions: list[int] = []
    batch.waits = []  # afresh: a shared transaction that failed runs its batches again
    waiting: list[int] = []
    outcomes = redact_batch(batch.requests, positions) if batch.requests else []
    for index, outcome in enumerate(outcomes):
        if outcome is True:
            redacted += 1
        elif outcome is False:
            already += 1
        elif isinstance(outcome, PrematureRedaction):
            until = batch.now + datetime.timedelta(seconds=outcome.remaining_seconds)
            if batch.positions is None:  # a subject's records are chosen old enough
                raise Wait(until)
            batch.waits.append(until)
            waiting.append(batch.positions[index])
        else:  # the record is gone from the account or the product unprovisioned since
            skipped += 1
    changes: dict[Any, Any] = {
        RedactionJob.redacted: RedactionJob.redacted + redacted,
        RedactionJob.already_redacted: RedactionJob.already_redacted + already,
        RedactionJob.skipped: RedactionJob.skipped + skipped,
    }
    if batch.cursor is not None:
        changes[RedactionJob.cursor] = batch.cursor
    if positions:  # one account's, appended together: consecutive
        JobLogRange.insert(job=job.seq, start=positions[0], count=len(positions)).execute()
    RedactionJob.update(changes).where(RedactionJob.seq == job.seq).execute()
    if batch.positions is not None:  # which of these objects wait (now, or no longer)
        (
            JobObject.update(waiting=JobObject.position.in_(waiting))
            .where((JobObject.job == job.seq) & JobObject.position.in_(batch.positions))
            .execute()
        )
    if batch.subject_done is not None:
        (
            JobObject.update(done=True)
            .where((JobObject.job == job.seq) & (JobObject.position == batch.subject_done))
            .execute()
        )
