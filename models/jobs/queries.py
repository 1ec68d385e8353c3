"""Reading jobs: one by id (the ownership check), an account's list, a job's objects and
validation errors, and a job as the API and the CLI show it."""

from __future__ import annotations

import datetime
import math
from collections.abc import Iterable, Iterator

from models.errors import InvalidCursor
from models.jobs.errors import JobNotFound
from models.jobs.job import JobObject, JobValidationError, RedactionJob
from models.store.base import find_owned
from models.store.pages import Page, newest_first, paginate
from models.store.state import current_store


def find_job(job_id: str, api_key: str | None = None) -> RedactionJob:
    """The job `job_id`, of account `api_key` (None: any account, for operators);
    JobNotFound for an unknown id or another account's job."""
    return find_owned(RedactionJob, job_id, api_key, JobNotFound)


def job_resource(job: RedactionJob, objects: Iterable[tuple[str, object]] | None = None) -> dict:
    """A job as the API and the CLI show it; `objects` (as `shown_objects` yields them)
    only when asked for: they can be many."""
    expanded: dict[str, list] | None = None
    if objects is not None:
        expanded = {"transactions": [], "subjects": []}
        for kind, shown in objects:
            expanded[kind].append(shown)
    return {
        "id": job.id,
        "object": "redaction_job",
        "created": _epoch(job.created),
        "livemode": True,
        "status": job.status,
        "validation_behavior": job.validation_behavior,
        "description": job.description,
        "objects": expanded,
        "run_at": _epoch(job.run_at),
        "counts": job.counts,
        "waiting": waiting(job),
    }


def waiting(job: RedactionJob) -> dict | None:
    """What the job's run left for later because it is premature: how many records, and
    when (Unix seconds, rounded up) the last comes of age and the run goes on; None when
    nothing waits. A job cancelled while it waited keeps it: the records it left."""
    if job.waiting_until is None or job.status not in ("redacting", "canceling", "canceled"):
        return None
    return {"records": job.waiting_records, "until": math.ceil(job.waiting_until.timestamp())}


def _epoch(moment: datetime.datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp())


def shown_objects(job: RedactionJob) -> Iterator[tuple[str, object]]:
    """The job's objects as the API shows them, in order, streamed: ("transactions",
    {"id", "product", "type"}) or ("subjects", number), named by the list each joins."""
    key = job_key(job)
    for item in iter_objects(job):
        shown = item.as_object(key)
        if "transaction" in shown:
            yield "transactions", shown["transaction"]
        else:
            yield "subjects", shown["subject"]


def job_key(job: RedactionJob) -> bytes | None:
    """The data key the job's numbers are sealed under; None once it is destroyed."""
    if job.key_id is None:
        return None
    return current_store().keystore.fetch([job.key_id]).get(job.key_id)


def iter_objects(job: RedactionJob) -> Iterator[JobObject]:
    """The job's objects in the order given, read in pages."""
    position = -1
    while True:
        page = list(
            JobObject.select()
            .where((JobObject.job == job.seq) & (JobObject.position > position))
            .order_by(JobObject.position)
            .limit(1000)
        )
        yield from page
        if len(page) < 1000:
            return
        position = page[-1].position


def list_jobs(
    api_key: str,
    *,
    limit: int,
    starting_after: str | None = None,
    ending_before: str | None = None,
    status: str | None = None,
) -> Page:
    """The account's jobs, newest first."""
    return newest_first(RedactionJob, api_key, limit, starting_after, ending_before, status)


def list_validation_errors(
    job: RedactionJob,
    *,
    limit: int,
    starting_after: str | None = None,
    ending_before: str | None = None,
) -> Page:
    """The errors of the job's last validation, in the order of the objects they concern,
    each with its object (`error.target`)."""
    prefix = f"{job.id}_e"

    def cursor(parameter: str, error_id: str | None):
        if error_id is None:
            return None
        position = error_id[len(prefix) :] if error_id.startswith(prefix) else ""
        if (
            not position.isdigit()
            or not JobValidationError.select()
            .where(
                (JobValidationError.job == job.seq) & (JobValidationError.position == int(position))
            )
            .exists()
        ):
            raise InvalidCursor(parameter, error_id)
        return int(position)

    query = (
        JobValidationError.select(JobValidationError, JobObject)
        .join(
            JobObject,
            on=(
                (JobObject.job == JobValidationError.job)
                & (JobObject.position == JobValidationError.position)
            ),
            attr="target",
        )
        .where(JobValidationError.job == job.seq)
    )
    return paginate(
        query,
        JobValidationError.position,
        False,
        limit,
        cursor("starting_after", starting_after),
        cursor("ending_before", ending_before),
    )


def validation_error_id(job: RedactionJob, error: JobValidationError) -> str:
    return f"{job.id}_e{error.position}"
