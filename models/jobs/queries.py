"""Reading jobs: one by id (the ownership check), an account's list, a job's objects and
validation errors, and a job as the API and the CLI show it."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterable, Iterator

from ..base import find_owned
from .errors import InvalidCursor, JobNotFound
from .job import JobObject, JobValidationError, RedactionJob


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
    }


def _epoch(moment: datetime.datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp())


def shown_objects(job: RedactionJob) -> Iterator[tuple[str, object]]:
    """The job's objects as the API shows them, in order, streamed: ("transactions",
    {"id", "product", "type"}) or ("subjects", number), named by the list each joins."""
    for item in iter_objects(job):
        shown = item.as_object()
        if "transaction" in shown:
            yield "transactions", shown["transaction"]
        else:
            yield "subjects", shown["subject"]


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


@dataclasses.dataclass
class Page:
    items: list
    has_more: bool


def paginate(query, key, descending: bool, limit: int, after, before) -> Page:
    """A page of `query` ordered by `key`, Stripe-style: `after` pages forward from a
    cursor value, `before` backward; `has_more` says whether more lie that way."""
    forward = key.desc() if descending else key.asc()
    backward = key.asc() if descending else key.desc()
    if before is not None:
        query = query.where(key > before if descending else key < before)
        items = list(query.order_by(backward).limit(limit + 1))
        has_more = len(items) > limit
        return Page(list(reversed(items[:limit])), has_more)
    if after is not None:
        query = query.where(key < after if descending else key > after)
    items = list(query.order_by(forward).limit(limit + 1))
    return Page(items[:limit], len(items) > limit)


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


def newest_first(model, api_key: str, limit: int, starting_after, ending_before, status) -> Page:
    """A page of the account's rows of `model` (jobs, holds: rows with a public `id`, an
    ordering `seq`, an `account` and a `status`), newest first; a cursor naming no row of
    the account is InvalidCursor."""
    query = model.select().where(model.account == api_key)
    if status is not None:
        query = query.where(model.status == status)

    def cursor(parameter: str, public_id: str | None):
        if public_id is None:
            return None
        row = model.get_or_none((model.id == public_id) & (model.account == api_key))
        if row is None:
            raise InvalidCursor(parameter, public_id)
        return row.seq

    return paginate(
        query,
        model.seq,
        True,
        limit,
        cursor("starting_after", starting_after),
        cursor("ending_before", ending_before),
    )


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
