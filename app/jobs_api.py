"""Handlers of the jobs API (openapi/jobs.yml). Each takes what Connexion validated, calls
the jobs service (models/jobs/service.py) and shapes the answer; the rules are the
service's."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence

import connexion

from models import database
from models.jobs import JobsService, RedactionJob, TransactionRef, shown_objects
from models.jobs.queries import list_validation_errors, validation_error_id

from .problems import InvalidJob

JOBS_PATH = "/v1/redact/jobs"

EXPAND_LIMIT = 11_000
"""The most objects an answer expands: what the API lets a job name (a job created from a
file by the CLI may name millions)."""


def _epoch(moment: datetime.datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp())


def _moment(seconds: int | None) -> datetime.datetime | None:
    if seconds is None:
        return None
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC)


def job_resource(job: RedactionJob, *, expand_objects: bool = False) -> dict:
    """A job as the API shows it; `objects` only when asked for (they can be many)."""
    objects: dict[str, list] | None = None
    if expand_objects and job.transactions + job.subjects > EXPAND_LIMIT:
        raise InvalidJob(
            f"Redaction job {job.id} names {job.transactions + job.subjects} "
            f"objects, more than an answer expands ({EXPAND_LIMIT}); use "
            "`redact jobs show --objects`"
        )
    if expand_objects:
        objects = {"transactions": [], "subjects": []}
        for kind, shown in shown_objects(job):
            objects[kind].append(shown)
    return {
        "id": job.id,
        "object": "redaction_job",
        "created": _epoch(job.created),
        "livemode": True,
        "status": job.status,
        "validation_behavior": job.validation_behavior,
        "description": job.description,
        "objects": objects,
        "run_at": _epoch(job.run_at),
        "counts": job.counts,
    }


class JobsApi:
    def __init__(self, jobs: JobsService):
        self.jobs = jobs

    def operations(self) -> dict[str, Callable]:
        return {
            "create-job": self.create,
            "list-jobs": self.list,
            "retrieve-job": self.retrieve,
            "update-job": self.update,
            "validate-job": self.validate,
            "run-job": self.run,
            "cancel-job": self.cancel,
            "list-validation-errors": self.validation_errors,
        }

    def create(self, body: dict, token_info: dict):
        """POST /jobs: the job is stored, then queued for validation; if the queue cannot
        take it, the job is removed again and the answer is 503."""
        objects = body["objects"]
        with database.connection_context():
            job, created = self.jobs.create(
                api_key=token_info["sub"],
                transactions=(
                    TransactionRef(t["id"], t["product"], t.get("type"))
                    for t in objects.get("transactions", ())
                ),
                subjects=objects.get("subjects", ()),
                validation_behavior=body.get("validation_behavior", "error"),
                description=body.get("description"),
                run_at=_moment(body.get("run_at")),
                idempotency_key=connexion.request.headers.get("Idempotency-Key"),
                request_body=body,
            )
            if not created:
                return job_resource(job), 200, {"Idempotent-Replayed": "true"}
            return job_resource(job), 200

    def list(
        self,
        token_info: dict,
        limit: int = 10,
        starting_after: str | None = None,
        ending_before: str | None = None,
        status: str | None = None,
        expand: Sequence[str] | None = None,
    ):
        with database.connection_context():
            page = self.jobs.list(
                token_info["sub"],
                limit=limit,
                starting_after=starting_after,
                ending_before=ending_before,
                status=status,
            )
            data = [
                job_resource(job, expand_objects="objects" in (expand or ())) for job in page.items
            ]
        return {"object": "list", "url": JOBS_PATH, "has_more": page.has_more, "data": data}

    def retrieve(self, job: str, token_info: dict, expand: Sequence[str] | None = None):
        with database.connection_context():
            found = self.jobs.job(job, token_info["sub"])
            return job_resource(found, expand_objects="objects" in (expand or ()))

    def update(self, job: str, body: dict, token_info: dict):
        changes = {
            name: body[name] for name in ("validation_behavior", "description") if name in body
        }
        if "run_at" in body:
            changes["run_at"] = _moment(body["run_at"])
        with database.connection_context():
            return job_resource(self.jobs.update(self.jobs.job(job, token_info["sub"]), changes))

    def validate(self, job: str, token_info: dict):
        return self._apply(job, token_info, "validate"), 200

    def cancel(self, job: str, token_info: dict):
        return self._apply(job, token_info, "cancel"), 200

    def run(self, job: str, token_info: dict, body: dict | None = None):
        """POST /jobs/{job}/run: 202 and the queue does the work, or with
        `processing_mode: sync` the work is done before the answer (small jobs only)."""
        if (body or {}).get("processing_mode", "async") != "sync":
            return self._apply(job, token_info, "run"), 202
        with database.connection_context():
            return job_resource(self.jobs.run_sync(self.jobs.job(job, token_info["sub"]))), 200

    def _apply(self, job: str, token_info: dict, action: str) -> dict:
        with database.connection_context():
            return job_resource(self.jobs.apply(self.jobs.job(job, token_info["sub"]), action))

    def validation_errors(
        self,
        job: str,
        token_info: dict,
        limit: int = 10,
        starting_after: str | None = None,
        ending_before: str | None = None,
    ):
        with database.connection_context():
            found = self.jobs.job(job, token_info["sub"])
            page = list_validation_errors(
                found, limit=limit, starting_after=starting_after, ending_before=ending_before
            )
            data = [
                {
                    "id": validation_error_id(found, error),
                    "code": error.code,
                    "object": error.target.as_object(),
                    "message": error.message,
                }
                for error in page.items
            ]
        return {
            "object": "list",
            "url": f"{JOBS_PATH}/{found.id}/validation_errors",
            "has_more": page.has_more,
            "data": data,
        }
