"""Finishing a job: succeeded or canceled, its `job.finished` entry in the erasure log
and its webhook event written with the status, its numbers forgotten."""

from __future__ import annotations

import datetime
from typing import Any

from models.jobs.job import JobLogRange, JobObject, RedactionJob, transition
from models.jobs.queries import waiting
from models.proof import entries
from models.store.base import database
from models.store.state import current_store
from models.webhooks.outbox import enqueue, job_event_data


def finish_run(job: RedactionJob, now: datetime.datetime) -> None:
    """redacting -> succeeded, forgetting the job's numbers and request digest; nothing
    waits any more."""
    _finish(job, "redacting", "succeeded", now, waiting_records=0, waiting_until=None)


def finish_cancel(job: RedactionJob, now: datetime.datetime) -> None:
    """canceling -> canceled: nothing more is redacted (what a run redacted before the
    cancel stays redacted, and `waiting` keeps what it left); the job's numbers are
    forgotten."""
    _finish(job, "canceling", "canceled", now)


def _finish(job: RedactionJob, source: str, target: str, now: datetime.datetime, **changes) -> None:
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
        if transition(job, source, target, request_digest=None, **changes):
            finished = RedactionJob.get_by_id(job.seq)
            [job.log_index] = entries.append([job_entry(finished)], now)
            RedactionJob.update(log_index=job.log_index).where(
                RedactionJob.seq == job.seq
            ).execute()
            data = job_event_data(finished, waiting(finished))
            enqueue(job.account_id, f"job.{target}", data, f"job:{job.id}", now)
    job.status = target


def not_redacted(job: RedactionJob) -> int:
    """Records a finished job left unredacted: those that waited when it was cancelled
    during its run, every record validation found when it was cancelled before; none for
    a job that succeeded."""
    if job.status != "canceled":
        return 0
    return job.waiting_records if job.waiting_until is not None else job.records


def job_entry(job: RedactionJob) -> tuple[str, str, dict]:
    """The `job.finished` entry of the erasure log (`job` as it finished): its status and
    counts (with the records it left unredacted), and its redactions as ranges of log
    positions with their count."""
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
            "not_redacted": not_redacted(job),
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
