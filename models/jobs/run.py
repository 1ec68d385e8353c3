"""Running a job: its records redacted in batches, each atomic with the job's progress.

A record is redacted at most once (the scrub only touches unredacted rows, and the run's
cursor moves with it), so the counts and the audit trail stay exact. A run never holds
more than one batch of records in memory.
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
    """One atomic step of a run: redact `requests`, then move the job's cursor to
    `cursor` (transaction objects) or mark `subject_done` (a subject with no more
    records); with the job's counts, in the same transaction."""

    job: RedactionJob
    owner: str
    now: datetime.datetime
    config: WorkConfig
    requests: list[RedactionRequest]
    cursor: int | None = None
    subject_done: int | None = None


@dataclasses.dataclass(frozen=True)
class _Run:
    """One run of a job: who runs it, on which clock and settings, for which products."""

    job: RedactionJob
    owner: str
    clock: Clock
    config: WorkConfig
    products: Collection[str]


def run(
    job: RedactionJob, *, owner: str, clock: Clock, config: WorkConfig
) -> datetime.datetime | None:
    """Redact the job's records, batch by batch, from where its row says the last run
    stopped; then mark it succeeded and forget its numbers. Returns when to come back if
    some records are not old enough yet (raises Wait), else None."""
    now = clock()
    if job.eligible_at is not None and job.eligible_at > now:
        raise Wait(job.eligible_at)
    job_run = _Run(job, owner, clock, config, Account.get_by_id(job.account_id).product_set)

    while True:  # the named transactions, from the cursor on
        objects = OBJECTS_AFTER.execute(
            None, {"job": job.seq, "after": job.cursor, "limit": config.batch_size}
        ).fetchall()
        if not objects:
            break
        now = clock()
        requests = [
            _request(job_run, now, transaction_id, product, direction or None)
            for _, transaction_id, product, direction in objects
        ]
        _commit(_Batch(job, owner, now, config, requests, cursor=objects[-1][0]))
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

    finish_run(job, clock())
    return None


def _erase_subject(job_run: _Run, subject) -> None:
    """Redact the records about one subject's number, batch by batch, then mark it done;
    Wait if records about it are not old enough yet."""
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
        newest = (
            Transaction.select(fn.MIN(Transaction.created_at))
            .where(
                subject_records(job, subject.subject_key)
                & Transaction.product.in_(sorted(products))
                & ~held_condition(job.account_id)
            )
            .scalar()
        )
        if newest is not None:  # records about the number arrived after validation
            raise Wait(Transaction.created_at.python_value(newest) + min_age)
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
    for outcome in redact_batch(batch.requests, positions) if batch.requests else []:
        if outcome is True:
            redacted += 1
        elif outcome is False:
            already += 1
        elif isinstance(outcome, PrematureRedaction):
            raise Wait(batch.now + datetime.timedelta(seconds=outcome.remaining_seconds))
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
    if batch.subject_done is not None:
        (
            JobObject.update(done=True)
            .where((JobObject.job == job.seq) & (JobObject.position == batch.subject_done))
            .execute()
        )
