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
from models.jobs.job import JobLogRange, JobObject, RedactionJob, transition
from models.jobs.lease import LeaseLost, Wait, WorkConfig, renew
from models.jobs.records import OBJECTS_AFTER, subject_records
from models.proof import entries
from models.records.account import Account
from models.records.transaction import Transaction
from models.store.base import Clock, database
from models.store.state import current_store
from models.webhooks.outbox import enqueue, job_event_data


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


def finish_run(job: RedactionJob, now: datetime.datetime) -> None:
    """redacting -> succeeded, forgetting the job's numbers and request digest."""
    _finish(job, "redacting", "succeeded", now)


def finish_cancel(job: RedactionJob, now: datetime.datetime) -> None:
    """canceling -> canceled: nothing is redacted; the job's numbers are forgotten."""
    _finish(job, "canceling", "canceled", now)


def _finish(job: RedactionJob, source: str, target: str, now: datetime.datetime) -> None:
    """Move a job to a final status, its webhook event written with it; a finished job
    keeps no number, not even hashed."""
    # The key its numbers are sealed under goes first, durably: no copy opens them after.
    if job.key_id is not None:
        current_store().keystore.destroy([job.key_id], now)
    with database.atomic():
        (
            JobObject.update(subject=None, subject_key=None, sealed_subject=None)
            .where((JobObject.job == job.seq) & JobObject.subject_key.is_null(False))
            .execute()
        )
        if transition(job, source, target, request_digest=None):
            finished = RedactionJob.get_by_id(job.seq)
            [job.log_index] = entries.append([job_entry(finished)], now)
            RedactionJob.update(log_index=job.log_index).where(
                RedactionJob.seq == job.seq
            ).execute()
            data = job_event_data(finished)
            enqueue(job.account_id, f"job.{target}", data, f"job:{job.id}", now)
    job.status = target


def job_entry(job: RedactionJob) -> tuple[str, str, dict]:
    """The `job.finished` entry of the erasure log (`job` as it finished): its status and
    counts, and its redactions as ranges of log positions with their count."""
    ranges = log_ranges(job)
    return (
        job.account_id,
        "job.finished",
        {
            "job": job.id,
            "status": job.status,
            "redacted": job.redacted,
            "already_redacted": job.already_redacted,
            "skipped": job.skipped,
            "entries": {"count": sum(end - start + 1 for start, end in ranges), "ranges": ranges},
        },
    )


def log_ranges(job: RedactionJob) -> list[list[int]]:
    """The log positions of the job's redactions as [first, last] ranges, merged."""
    ranges: list[list[int]] = []
    rows: list[Any] = list(
        JobLogRange.select(JobLogRange.start, JobLogRange.count)
        .where(JobLogRange.job == job.seq)
        .order_by(JobLogRange.start)
        .tuples()
    )
    for start, count in rows:
        if ranges and ranges[-1][1] + 1 == start:
            ranges[-1][1] += count
        else:
            ranges.append([start, start + count - 1])
    return ranges
