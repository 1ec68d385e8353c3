"""Redaction jobs, in one place. Read in this order:

- job.py: the rows (RedactionJob, JobObject, JobValidationError) and the state machine
- errors.py: every error of the jobs API, each carrying its data
- lifecycle.py: creating a job, the moves a client asks for, updates
- queries.py: one job (the ownership check), lists and pages, a job as it is shown
- lease.py, validation.py, records.py, run.py, finish.py: the work a queue worker does,
  resumable after a kill
- queue.py: Huey carries job ids; `advance(job_id)` does what a job needs next
- service.py: what the jobs API and the `redact jobs` commands share, with its rules

Only the rows and the errors are named here: importing the package does not load the
queue (Huey, Redis) or the service.
"""

from models.jobs.errors import (
    IdempotencyMismatch,
    InvalidJobRequest,
    InvalidJobUpdate,
    InvalidMove,
    JobError,
    JobNotFound,
    QueueUnavailable,
    TooLargeForSync,
    TooManyJobs,
)
from models.jobs.job import STATUSES, RedactionJob, TransactionRef

__all__ = [
    "STATUSES",
    "IdempotencyMismatch",
    "InvalidJobRequest",
    "InvalidJobUpdate",
    "InvalidMove",
    "JobError",
    "JobNotFound",
    "QueueUnavailable",
    "RedactionJob",
    "TooLargeForSync",
    "TooManyJobs",
    "TransactionRef",
]
