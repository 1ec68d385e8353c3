"""The error catalogue: one exception per error the contract names, rendered in one place.

Problem bodies carry `type`, `title`, `detail` and `instance` (the request's trace id), as
the upstream contract shapes them; `type` URIs are the upstream ones. 401 has the
contract's own shape. Errors from Connexion, Starlette and the domain are mapped here too.
"""

from __future__ import annotations

import json
import logging

import connexion.exceptions
import peewee
import starlette.exceptions
from connexion.lifecycle import ConnexionResponse

from app.http.admission import Overloaded
from app.http.edge import BadContentLength, BodyTooLarge, UnroutablePath
from app.http.state import request_state
from models import PrematureRedaction, RecordHeld, RecordNotFound, Unprovisioned
from models.errors import (
    HoldNotFound,
    InvalidCursor,
    InvalidHold,
    InvalidLogRange,
    InvalidPolicy,
    InvalidRecords,
    InvalidWebhook,
    NoReceipt,
    NoSigningKey,
    RecordConflict,
    TooManyWebhooks,
    WebhookNotFound,
)
from models.jobs import (
    IdempotencyMismatch,
    InvalidJobRequest,
    InvalidJobUpdate,
    InvalidMove,
    JobNotFound,
    QueueUnavailable,
    TooLargeForSync,
    TooManyJobs,
)

log = logging.getLogger("redact.errors")

DOCS = "https://developer.nexmo.com/api-errors"


class Problem(Exception):
    """An error answered with a problem body. `status` is read by Connexion too."""

    status = 400
    type = "about:blank"
    title = "Bad Request"

    def __init__(self, detail: str, headers: dict | None = None, extensions: dict | None = None):
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}
        self.extensions = extensions or {}
        """RFC 7807 extension members, added to the body."""


class InvalidJson(Problem):
    status, type, title = 422, f"{DOCS}#invalid-json", "Invalid JSON"


class InvalidProduct(Problem):
    status, type, title = 422, f"{DOCS}/redact#invalid-product", "Invalid Product"

    def __init__(self, product):
        super().__init__(f"No product corresponding to supplied string {product}!")


class InvalidId(Problem):
    status, type, title = 404, f"{DOCS}#invalid-id", "Invalid ID"


class PrematureRedactionProblem(Problem):
    status, type, title = 403, f"{DOCS}/redact#premature-redaction", "Premature Redaction"


class UnprovisionedProblem(Problem):
    status, type, title = 403, f"{DOCS}#unprovisioned", "Authorisation error"


class RateLimitHit(Problem):
    status, type, title = 429, f"{DOCS}/redact#rate-limit", "Rate Limit Hit"

    def __init__(self, retry_after: int, headers: dict | None = None):
        super().__init__(
            "Please wait, then retry your request",
            {**(headers or {}), "Retry-After": str(retry_after)},
        )


class JobProblem(Problem):
    """Errors the upstream catalogue does not name (the jobs, records and webhooks APIs,
    legal holds): their types are URNs of this service (listed in docs/jobs.md,
    docs/records.md and docs/webhooks.md)."""

    code: str

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.type = f"urn:redact:problem:{cls.code}"


class JobNotFoundProblem(JobProblem):
    status, code, title = 404, "job-not-found", "No Such Job"


class InvalidJobStatus(JobProblem):
    status, code, title = 409, "invalid-job-status", "Invalid Job Status"


class InvalidJob(JobProblem):
    status, code, title = 422, "invalid-job", "Invalid Job"


class IdempotencyKeyReused(JobProblem):
    status, code, title = 409, "idempotency-key-reused", "Idempotency Key Reused"


class TooLargeForSyncProblem(JobProblem):
    status, code, title = 422, "too-large-for-sync", "Too Large For Sync"


class InvalidCursorProblem(JobProblem):
    status, code, title = 404, "invalid-cursor", "No Such Cursor"


class TooManyJobsProblem(JobProblem):
    status, code, title = 429, "too-many-jobs", "Too Many Jobs"

    def __init__(self, detail: str):
        super().__init__(detail, {"Retry-After": "60"})


class QueueUnavailableProblem(JobProblem):
    status, code, title = 503, "queue-unavailable", "Queue Unavailable"

    def __init__(self, detail: str):
        super().__init__(detail, {"Retry-After": "5"})


class LegalHoldProblem(JobProblem):
    """The Redact API's answer for a held record: the contract's 403 shape, so that
    existing clients see a normal client error."""

    status, code, title = 403, "legal-hold", "Legal Hold"


class InvalidRecordsProblem(JobProblem):
    status, code, title = 422, "invalid-records", "Invalid Records"


class RecordConflictProblem(JobProblem):
    status, code, title = 409, "record-conflict", "Record Conflict"


class HoldNotFoundProblem(JobProblem):
    status, code, title = 404, "hold-not-found", "No Such Hold"


class InvalidHoldProblem(JobProblem):
    status, code, title = 422, "invalid-hold", "Invalid Hold"


class InvalidPolicyProblem(JobProblem):
    status, code, title = 422, "invalid-policy", "Invalid Policy"


class NoReceiptProblem(JobProblem):
    status, code, title = 409, "no-receipt", "No Receipt"


class InvalidLogRangeProblem(JobProblem):
    # 404: the positions name no entry or tree of the account's log (another account's
    # log included: its positions are not this account's).
    status, code, title = 404, "invalid-log-range", "No Such Log Range"


class NoSigningKeyProblem(JobProblem):
    status, code, title = 503, "no-signing-key", "No Signing Key"


class WebhookNotFoundProblem(JobProblem):
    status, code, title = 404, "webhook-not-found", "No Such Webhook"


class InvalidWebhookProblem(JobProblem):
    status, code, title = 422, "invalid-webhook", "Invalid Webhook"


class TooManyWebhooksProblem(JobProblem):
    status, code, title = 409, "too-many-webhooks", "Too Many Webhooks"


class Unauthorized(Exception):
    """Missing or wrong credentials: the contract's 401, not a problem body."""

    status = 401


class HTTPProblem(Problem):
    """A plain HTTP error outside the contract's catalogue (unknown path, wrong method,
    oversized body): RFC 7807 `about:blank` with the status phrase as title."""

    def __init__(
        self, status: int, detail: str, headers: dict | None = None, extensions: dict | None = None
    ):
        super().__init__(detail, headers, extensions)
        self.status = status
        self.title = _PHRASES.get(status, "Error")


_PHRASES = {
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

_DOMAIN = {
    RecordNotFound: InvalidId,
    PrematureRedaction: PrematureRedactionProblem,
    Unprovisioned: UnprovisionedProblem,
    JobNotFound: JobNotFoundProblem,
    InvalidMove: InvalidJobStatus,
    InvalidJobUpdate: InvalidJobStatus,
    InvalidJobRequest: InvalidJob,
    IdempotencyMismatch: IdempotencyKeyReused,
    InvalidCursor: InvalidCursorProblem,
    TooManyJobs: TooManyJobsProblem,
    TooLargeForSync: TooLargeForSyncProblem,
    RecordHeld: LegalHoldProblem,
    RecordConflict: RecordConflictProblem,
    HoldNotFound: HoldNotFoundProblem,
    InvalidHold: InvalidHoldProblem,
    InvalidPolicy: InvalidPolicyProblem,
    NoReceipt: NoReceiptProblem,
    InvalidLogRange: InvalidLogRangeProblem,
    NoSigningKey: NoSigningKeyProblem,
    WebhookNotFound: WebhookNotFoundProblem,
    InvalidWebhook: InvalidWebhookProblem,
    TooManyWebhooks: TooManyWebhooksProblem,
}


def as_problem(exc: Exception) -> Problem | Unauthorized:
    """The catalogue entry for any exception that reached the edge of the app."""
    if isinstance(exc, (Problem, Unauthorized)):
        return exc
    if isinstance(exc, InvalidRecords):
        return InvalidRecordsProblem(
            str(exc),
            extensions={
                "count": exc.count,
                "errors": [
                    {"index": index, "field": field, "message": message}
                    for index, field, message in exc.errors
                ],
            },
        )
    for domain_class, problem_class in _DOMAIN.items():
        if isinstance(exc, domain_class):
            return problem_class(str(exc))
    if isinstance(exc, QueueUnavailable):
        return QueueUnavailableProblem(f"Cannot queue the job now: {exc}; retry later")
    if isinstance(exc, BodyTooLarge):
        return HTTPProblem(413, str(exc))
    if isinstance(exc, BadContentLength):
        return HTTPProblem(400, str(exc))
    if isinstance(exc, UnroutablePath):
        return HTTPProblem(404, str(exc))
    if isinstance(exc, Overloaded):
        return HTTPProblem(503, str(exc), {"Retry-After": "1"})
    if isinstance(exc, connexion.exceptions.ProblemException):
        if exc.status == 401:
            return Unauthorized()
        if exc.status == 415:
            # Connexion's media-type check: the contract says 422.
            return InvalidJson(str(exc.detail or exc.title))
        return HTTPProblem(exc.status, str(exc.detail or exc.title), dict(exc.headers or {}))
    if isinstance(exc, (peewee.OperationalError, OSError)) or _missing_table(exc):
        return HTTPProblem(
            503, "The transaction store is unavailable; retry later", {"Retry-After": "1"}
        )
    if isinstance(exc, starlette.exceptions.HTTPException):
        return HTTPProblem(exc.status_code, str(exc.detail), dict(exc.headers or {}))
    return HTTPProblem(500, "The server could not complete the request")


def _missing_table(exc: Exception) -> bool:
    """PostgreSQL's "undefined table": a store whose tables are not created yet (the
    service started before its database, and sets it up when it answers)."""
    return (
        isinstance(exc, peewee.ProgrammingError)
        and bool(exc.args)
        and getattr(exc.args[0], "pgcode", None) == "42P01"
    )


UNAUTHORIZED_BODY = json.dumps({"type": "UNAUTHORIZED", "error_title": "Unauthorized"})
WWW_AUTHENTICATE = {"WWW-Authenticate": 'Basic realm="Redact API"'}


async def render(request, exc: Exception) -> ConnexionResponse:
    """Connexion error handler: every error of every layer leaves through here."""
    problem = as_problem(exc)
    trace_id = request_state(request.scope).trace_id
    if isinstance(problem, Unauthorized):
        return ConnexionResponse(
            status_code=401,
            mimetype="application/json",
            body=UNAUTHORIZED_BODY,
            headers=dict(WWW_AUTHENTICATE),
        )
    if problem.status >= 500 and not isinstance(exc, Overloaded):  # shed: counted, not logged
        log.error("unhandled error trace_id=%s: %s", trace_id, type(exc).__name__, exc_info=exc)
    body = {
        "type": problem.type,
        "title": problem.title,
        "detail": problem.detail,
        "instance": trace_id,
        **problem.extensions,
    }
    return ConnexionResponse(
        status_code=problem.status,
        mimetype="application/json",
        body=json.dumps(body),
        headers=problem.headers,
    )
