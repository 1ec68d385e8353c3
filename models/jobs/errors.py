"""The errors of redaction jobs, each carrying its data; app/http/problems.py renders them."""

from __future__ import annotations

from models.errors import RedactionError
from models.jobs.job import MOVES


class JobError(RedactionError):
    """Base of the errors of the jobs API."""


class JobNotFound(JobError):
    def __init__(self, job_id: str):
        super().__init__(f"No redaction job {job_id!r}")
        self.job_id = job_id


class InvalidMove(JobError):
    def __init__(self, job_id: str, action: str, status: str):
        allowed = " or ".join(MOVES[action]) if action in MOVES else "no status"
        if action == "cancel":
            allowed = "ready or failed, or redacting while it waits for premature records"
        super().__init__(
            f"Cannot {action} redaction job {job_id} in status '{status}'; "
            f"{action} needs status {allowed}"
        )
        self.job_id, self.action, self.status = job_id, action, status


class InvalidJobUpdate(JobError):
    """An update asks for a change the job's status does not allow."""


class InvalidJobRequest(JobError):
    """A job's objects are malformed beyond what the contract's schema checks (a repeated
    transaction or number, a subject that is not a phone number)."""


class TooManyJobs(JobError):
    def __init__(self, api_key: str, limit: int):
        super().__init__(
            f"Account {api_key} has {limit} unfinished redaction jobs, the "
            "most allowed; wait for one to finish or cancel one"
        )
        self.limit = limit


class IdempotencyMismatch(JobError):
    def __init__(self, key: str):
        super().__init__(f"Idempotency-Key {key!r} was used with a different request")


class QueueUnavailable(JobError):
    """The queue cannot take the work now (its storage is down or the queue is full)."""


class TooLargeForSync(JobError):
    """A sync run was asked of a job too large for it, or one that must wait."""
