"""Which worker works on a job: leases, and the sweep that takes up what a dead worker
or a lost task left.

Every step of a job's work can be repeated and records its progress in the job's row in
the same transaction as the work it did, so a worker killed at any point loses nothing:
its lease on the job expires, the sweep queues the job again, and the next worker goes on
from the row.
"""

from __future__ import annotations

import dataclasses
import datetime

from models.jobs.job import WORKING, RedactionJob, transition
from models.store.base import database


@dataclasses.dataclass(frozen=True)
class WorkConfig:
    """How a worker works, from the settings: the premature window, records per batch,
    how long a lease lasts."""

    min_age_seconds: int
    batch_size: int
    lease_seconds: int

    @property
    def lease(self) -> datetime.timedelta:
        return datetime.timedelta(seconds=self.lease_seconds)

    @property
    def queued_grace(self) -> datetime.timedelta:
        """How long a queued, unclaimed job may wait before the sweep queues it again."""
        return 10 * self.lease


class LeaseLost(Exception):
    """Another worker took the job over (this one was too slow to renew its lease)."""


@dataclasses.dataclass
class Wait(Exception):
    """The job cannot go on before `until` (premature records)."""

    until: datetime.datetime


def claim(
    job_id: str, owner: str, now: datetime.datetime, config: WorkConfig
) -> RedactionJob | None:
    """Take the job's lease if it needs work (or is ready and its `run_at` has come) and
    no live lease is held on it."""
    needs_work = RedactionJob.status.in_(WORKING) | (
        (RedactionJob.status == "ready") & (RedactionJob.run_at <= now)
    )
    claimed = (
        RedactionJob.update(lease_owner=owner, lease_until=now + config.lease)
        .where(
            (RedactionJob.id == job_id)
            & needs_work
            & (
                RedactionJob.lease_owner.is_null()
                | RedactionJob.lease_until.is_null()
                | (RedactionJob.lease_until <= now)
            )
        )
        .execute()
    )
    return RedactionJob.get(RedactionJob.id == job_id) if claimed else None


def renew(job: RedactionJob, owner: str, now: datetime.datetime, config: WorkConfig) -> None:
    """Extend the lease, inside the caller's transaction; LeaseLost if no longer ours."""
    renewed = (
        RedactionJob.update(lease_until=now + config.lease)
        .where((RedactionJob.seq == job.seq) & (RedactionJob.lease_owner == owner))
        .execute()
    )
    if not renewed:
        raise LeaseLost(job.id)


def release(job: RedactionJob, owner: str, come_back: datetime.datetime | None) -> None:
    """Give the lease up; a job that waits keeps `lease_until` as the time to come back,
    so that the sweep leaves it alone until then."""
    (
        RedactionJob.update(lease_owner=None, lease_until=come_back)
        .where((RedactionJob.seq == job.seq) & (RedactionJob.lease_owner == owner))
        .execute()
    )


def start_scheduled_run(job: RedactionJob) -> RedactionJob:
    transition(job, "ready", "redacting")
    return RedactionJob.get_by_id(job.seq)


def sweep(now: datetime.datetime, config: WorkConfig) -> list[str]:
    """The jobs a worker should take up now: ready jobs whose `run_at` has come (moved to
    redacting here), and jobs with work whose lease has expired (a worker died, a queued
    task was lost, or a wait is over). Marks them queued; returns their ids."""
    with database.atomic():
        due_jobs = list(
            RedactionJob.select().where(
                (RedactionJob.status == "ready") & (RedactionJob.run_at <= now)
            )
        )
        for job in due_jobs:
            start_scheduled_run(job)
        due = [job.id for job in due_jobs]
        stale = [
            j.id
            for j in RedactionJob.select(RedactionJob.id).where(
                RedactionJob.status.in_(WORKING)
                & (RedactionJob.lease_until.is_null() | (RedactionJob.lease_until <= now))
            )
        ]
        return sorted(set(due) | set(stale))


def mark_queued(job_ids: list[str], now: datetime.datetime, config: WorkConfig) -> None:
    """Note that tasks for these jobs are being queued: the sweep leaves them alone for a
    while, a worker can claim them at once. Jobs a worker holds are left as they are."""
    (
        RedactionJob.update(lease_until=now + config.queued_grace)
        .where(RedactionJob.id.in_(job_ids) & RedactionJob.lease_owner.is_null())
        .execute()
    )
