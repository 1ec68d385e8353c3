"""Handlers of the jobs API (openapi/jobs.yml). Each takes what Connexion validated, calls
the jobs service (models/jobs/service.py) and shapes the answer; the rules are the
service's."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence

from models.jobs import InvalidJobRequest, RedactionJob, TransactionRef
from models.jobs.queries import job_key, job_resource, shown_objects, validation_error_id
from models.jobs.service import JobsService

JOBS_PATH = "/v1/redact/jobs"

EXPAND_LIMIT = 11_000
"""The most objects an answer expands: what the API lets a job name (a job created from a
file by the CLI may name millions)."""


def _moment(seconds: int | None) -> datetime.datetime | None:
    if seconds is None:
        return None
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC)


def _shown(job: RedactionJob, expand: Sequence[str] | None = None) -> dict:
    """The job as the API shows it, its objects expanded when asked for, up to
    EXPAND_LIMIT (an answer of millions would not do)."""
    if "objects" not in (expand or ()):
        return job_resource(job)
    if job.transactions + job.subjects > EXPAND_LIMIT:
        raise InvalidJobRequest(
            f"Redaction job {job.id} names {job.transactions + job.subjects} "
            f"objects, more than an answer expands ({EXPAND_LIMIT}); use "
            "`redact jobs show --objects`"
        )
    return job_resource(job, shown_objects(job))


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

    def create(self, body: dict, token_info: dict, idempotency_key: str | None = None):
        """POST /jobs: the job is stored, then queued for validation; if the queue cannot
        take it, the job is removed again and the answer is 503. A repeated
        `idempotency_key` with the same body answers the job it created."""
        objects = body["objects"]
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
            idempotency_key=idempotency_key,
            request_body=body,
            suppress=body.get("suppress", False),
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
        page = self.jobs.list(
            token_info["sub"],
            limit=limit,
            starting_after=starting_after,
            ending_before=ending_before,
            status=status,
        )
        data = [_shown(job, expand) for job in page.items]
        return {"object": "list", "url": JOBS_PATH, "has_more": page.has_more, "data": data}

    def retrieve(self, job: str, token_info: dict, expand: Sequence[str] | None = None):
        found = self.jobs.job(job, token_info["sub"])
        return _shown(found, expand)

    def update(self, job: str, body: dict, token_info: dict):
        changes = {
            name: body[name] for name in ("validation_behavior", "description") if name in body
        }
        if "run_at" in body:
            changes["run_at"] = _moment(body["run_at"])
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
        return job_resource(self.jobs.run_sync(self.jobs.job(job, token_info["sub"]))), 200

    def _apply(self, job: str, token_info: dict, action: str) -> dict:
        """A client's move: refused with 503 while the queue is full (checked first, as
        before the job is looked up)."""
        self.jobs.check_room()
        found = self.jobs.job(job, token_info["sub"])
        return job_resource(self.jobs.apply(found, action, admit=False))

    def validation_errors(
        self,
        job: str,
        token_info: dict,
        limit: int = 10,
        starting_after: str | None = None,
        ending_before: str | None = None,
    ):
        found = self.jobs.job(job, token_info["sub"])
        page = self.jobs.validation_errors(
            found, limit=limit, starting_after=starting_after, ending_before=ending_before
        )
        key = job_key(found)
        data = [
            {
                "id": validation_error_id(found, error),
                "code": error.code,
                "object": error.target.as_object(key),
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
