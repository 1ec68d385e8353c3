"""The jobs service: what the jobs API and the `redact jobs` commands both do, with the
rules that govern it (how many unfinished jobs an account may have, whether the queue has
room, what a sync run takes). Callers map its answers and errors to their own medium;
nothing here knows of HTTP or of the command line.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
from collections.abc import Iterable
from typing import Protocol

from models.jobs.errors import QueueUnavailable, TooLargeForSync
from models.jobs.job import RedactionJob, TransactionRef
from models.jobs.lifecycle import (
    create_job,
    delete_job,
    move,
    start_validation,
    undo_move,
    update_job,
)
from models.jobs.queries import Page, find_job, list_jobs, list_validation_errors
from models.store.base import Clock

logger = logging.getLogger("redact.jobs.service")


@dataclasses.dataclass(frozen=True)
class JobLimits:
    max_active_jobs: int
    """Unfinished jobs per account (REDACT_MAX_ACTIVE_JOBS)."""
    sync_max_records: int
    """The largest job a sync run takes (REDACT_SYNC_MAX_RECORDS)."""


class Queue(Protocol):
    """Where the service hands work to workers (models.worker.queue.JobQueue)."""

    def check_room(self) -> None:
        """QueueUnavailable unless the queue can take work now."""

    def submit(self, job_id: str, eta: datetime.datetime | None = None) -> None:
        """Queue `advance(job_id)`, at `eta` if given."""

    def run_now(self, job_id: str) -> None:
        """Do what the job needs next in this process (a sync run)."""


class JobsService:
    def __init__(self, queue: Queue, limits: JobLimits, clock: Clock):
        self.queue = queue
        self.limits = limits
        self.clock = clock

    def job(self, job_id: str, api_key: str | None = None) -> RedactionJob:
        """The job `job_id`, of account `api_key` (None: any account, for operators);
        JobNotFound for an unknown id or another account's job."""
        return find_job(job_id, api_key)

    def list(self, api_key: str, **page) -> Page:
        """The account's jobs, newest first (`page`: models.jobs.queries.list_jobs)."""
        return list_jobs(api_key, **page)

    def validation_errors(self, job: RedactionJob, **page) -> Page:
        """The errors of the job's last validation (`page`: as list_validation_errors)."""
        return list_validation_errors(job, **page)

    # create_job's arguments (models/jobs/lifecycle.py) less what the service fills in.
    def create(
        self,
        *,
        api_key: str,
        transactions: Iterable[TransactionRef],
        subjects: Iterable[str],
        validation_behavior: str = "error",
        description: str | None = None,
        run_at: datetime.datetime | None = None,
        idempotency_key: str | None = None,
        request_body: dict | None = None,
        suppress: bool = False,
    ) -> tuple[RedactionJob, bool]:
        """Store a job and queue its validation; returns (job, created). Admitted only if
        the account has fewer than `max_active_jobs` unfinished jobs (TooManyJobs) and the
        queue has room; if the queue cannot take it, the job is removed again and
        QueueUnavailable raised. The rest as models.jobs.lifecycle.create_job."""
        job, created = create_job(
            api_key=api_key,
            transactions=transactions,
            subjects=subjects,
            validation_behavior=validation_behavior,
            description=description,
            run_at=run_at,
            now=self.clock(),
            max_unfinished=self.limits.max_active_jobs,
            idempotency_key=idempotency_key,
            request_body=request_body,
            admit=self.queue.check_room,
            suppress=suppress,
        )
        if not created:
            return job, False
        try:
            self.queue.submit(job.id)
        except QueueUnavailable:
            delete_job(job)
            raise
        return start_validation(job), True

    def check_room(self) -> None:
        """QueueUnavailable if the queue cannot take work now (full or unreachable)."""
        self.queue.check_room()

    def apply(
        self, job: RedactionJob, action: str, *, here: bool = False, admit: bool = True
    ) -> RedactionJob:
        """Apply a client's move (validate, run, cancel) and queue the work it starts; if
        the queue cannot take it, the move is undone and QueueUnavailable raised. With
        `admit`, a move is refused (QueueUnavailable) while the queue is full; an operator
        passes False (cancelling is how a full queue is relieved). With `here`, the work is
        done in this thread instead."""
        if admit and not here:
            self.queue.check_room()
        moved = move(job, action)
        if here:
            self.queue.run_now(moved.id)
        else:
            try:
                self.queue.submit(moved.id)
            except QueueUnavailable:
                undo_move(job, moved)
                raise
        return RedactionJob.get_by_id(moved.seq)

    def run_sync(self, job: RedactionJob) -> RedactionJob:
        """Run a ready job in this thread, answering once it has finished: only a job of
        at most `sync_max_records` records with none that must wait (TooLargeForSync)."""
        if job.status == "ready":
            limit = self.limits.sync_max_records
            if job.records > limit:
                raise TooLargeForSync(
                    f"Redaction job {job.id} names {job.records} records; a sync run "
                    f"takes at most {limit}. Run it without processing_mode=sync"
                )
            if job.eligible_at is not None and job.eligible_at > self.clock():
                raise TooLargeForSync(
                    f"Redaction job {job.id} must wait until "
                    f"{job.eligible_at.isoformat()} for premature records; run it "
                    "without processing_mode=sync"
                )
        return self.apply(job, "run", here=True)

    def update(self, job: RedactionJob, changes: dict) -> RedactionJob:
        """Change `description`, `run_at` or `validation_behavior`; a ready job whose
        `run_at` changed is scheduled for it (if the queue cannot take it now, the sweep
        starts the job within a minute of its run_at anyway)."""
        updated = update_job(job, changes)
        if "run_at" in changes and updated.status == "ready" and updated.run_at:
            try:
                self.queue.submit(updated.id, eta=updated.run_at)
            except QueueUnavailable:
                logger.warning("job %s: could not schedule its run_at", updated.id)
        return updated
