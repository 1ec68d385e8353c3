"""Redaction jobs, in one place. Read in this order:

- job.py: the rows (RedactionJob, JobObject, JobValidationError) and the state machine
- errors.py: every error of the jobs API, each carrying its data
- lifecycle.py: creating a job, the moves a client asks for, updates
- queries.py: lists and pages of jobs, objects and validation errors
- lease.py, validation.py, run.py: the work a queue worker does, resumable after a kill
- queue.py: Huey carries job ids; `advance(job_id)` does what a job needs next
- service.py: what the jobs API and the `redact jobs` commands share, with its rules
"""

from .errors import (
    IdempotencyMismatch,
    InvalidCursor,
    InvalidJobRequest,
    InvalidJobUpdate,
    InvalidMove,
    JobError,
    JobNotFound,
    QueueUnavailable,
    TooLargeForSync,
    TooManyJobs,
)
from .job import STATUSES, RedactionJob, TransactionRef
from .lease import WorkConfig
from .queue import JobQueue
from .service import JobLimits, JobsService, shown_objects

__all__ = [
    "STATUSES",
    "IdempotencyMismatch",
    "InvalidCursor",
    "InvalidJobRequest",
    "InvalidJobUpdate",
    "InvalidMove",
    "JobError",
    "JobLimits",
    "JobNotFound",
    "JobQueue",
    "JobsService",
    "QueueUnavailable",
    "RedactionJob",
    "TooLargeForSync",
    "TooManyJobs",
    "TransactionRef",
    "WorkConfig",
    "shown_objects",
]
