"""The error catalogue: every error the contracts name, in one table, rendered in one place.

`CATALOGUE` maps each error class to its problem: status, `type` URI, title, and what the
error adds (a detail other than its message, headers, RFC 7807 extension members). The
domain's errors (models/errors.py, models/jobs/errors.py) carry their data and know nothing
of HTTP; the edge's own are declared where they are raised (app/http/edge.py,
admission.py, invalid.py, validation.py) or here. Bodies carry `type`, `title`, `detail` and
`instance` (the request's trace id), as the upstream contract shapes them; `type` URIs are
the upstream ones where the upstream catalogue names the error, else URNs of this service
(docs/api.md lists them all, and a test keeps that list and this one the same). A request
that breaks a schema adds `errors`, each field and what is wrong with it in words
(app/http/invalid.py, validation.py). 401 has the contract's own shape. Errors of
Connexion, Starlette and the database are mapped by `as_problem` too; `render` answers
them all.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import typing as t
from collections.abc import Callable

import connexion.exceptions
import peewee
import starlette.exceptions
from connexion.lifecycle import ConnexionResponse

from app.http import invalid
from app.http.admission import Overloaded
from app.http.edge import BadContentLength, BodyTooLarge, UnroutablePath
from app.http.state import request_state
from app.http.validation import InvalidJson, InvalidProduct
from models import PrematureRedaction, RecordHeld, RecordNotFound, Unprovisioned, errors
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


class RateLimitHit(Exception):
    """Over a rate limit: retry after `retry_after` seconds; `headers` are the limit's
    `RateLimit` headers, if any."""

    def __init__(self, retry_after: int, headers: dict | None = None):
        super().__init__("Please wait, then retry your request")
        self.headers = {**(headers or {}), "Retry-After": str(retry_after)}


class Unauthorized(Exception):
    """Missing or wrong credentials: the contract's 401, not a problem body."""

    status = 401  # read by Connexion's security middleware


class HTTPProblem(Exception):
    """A plain HTTP error outside the catalogue (unknown path, wrong method, metrics off,
    not ready): RFC 7807 `about:blank` with the status phrase as title."""

    def __init__(
        self, status: int, detail: str, headers: dict | None = None, extensions: dict | None = None
    ):
        super().__init__(detail)
        self.status, self.detail = status, detail
        self.headers, self.extensions = headers or {}, extensions or {}


@dataclasses.dataclass(frozen=True)
class Problem:
    """A problem as answered: the body's members and the response's headers."""

    status: int
    type: str
    title: str
    detail: str
    headers: dict = dataclasses.field(default_factory=dict)
    extensions: dict = dataclasses.field(default_factory=dict)
    """RFC 7807 extension members, added to the body."""


@dataclasses.dataclass(frozen=True)
class ProblemType:
    """How the errors of one class are answered. `detail`, `headers` and `extensions` read
    the error; the detail is its message unless said otherwise."""

    status: int
    type: str
    title: str
    detail: Callable[[Exception], str] = str
    headers: Callable[[Exception], dict] | None = None
    extensions: Callable[[Exception], dict] | None = None

    def of(self, exc: Exception) -> Problem:
        return Problem(
            self.status,
            self.type,
            self.title,
            self.detail(exc),
            self.headers(exc) if self.headers else {},
            self.extensions(exc) if self.extensions else {},
        )


def _ours(code: str, status: int, title: str, **reads) -> ProblemType:
    """A problem the upstream catalogue does not name: its type is a URN of this service."""
    return ProblemType(status, f"urn:redact:problem:{code}", title, **reads)


def _retry_after(seconds: int) -> Callable[[Exception], dict]:
    return lambda _: {"Retry-After": str(seconds)}


def _limit_headers(exc: Exception) -> dict:
    return t.cast(RateLimitHit, exc).headers


def _http(status: int, title: str, **reads) -> ProblemType:
    return ProblemType(status, "about:blank", title, **reads)


CATALOGUE: dict[type[Exception], ProblemType] = {
    # Every contract's schema failures but the Redact API's (app/http/invalid.py).
    invalid.InvalidRequest: _ours(
        "invalid-request", 422, "Invalid Request", extensions=invalid.listed_errors
    ),
    invalid.InvalidParameters: _ours(
        "invalid-parameters", 400, "Invalid Parameters", extensions=invalid.listed_errors
    ),
    # The Redact API's, with the upstream types.
    InvalidJson: ProblemType(422, f"{DOCS}#invalid-json", "Invalid JSON"),
    InvalidProduct: ProblemType(422, f"{DOCS}/redact#invalid-product", "Invalid Product"),
    RecordNotFound: ProblemType(404, f"{DOCS}#invalid-id", "Invalid ID"),
    PrematureRedaction: ProblemType(
        403, f"{DOCS}/redact#premature-redaction", "Premature Redaction"
    ),
    Unprovisioned: ProblemType(403, f"{DOCS}#unprovisioned", "Authorisation error"),
    RateLimitHit: ProblemType(
        429, f"{DOCS}/redact#rate-limit", "Rate Limit Hit", headers=_limit_headers
    ),
    # A held record: the Redact API's 403 shape, so that existing clients see a normal
    # client error.
    RecordHeld: _ours("legal-hold", 403, "Legal Hold"),
    # The jobs API's.
    JobNotFound: _ours("job-not-found", 404, "No Such Job"),
    InvalidMove: _ours("invalid-job-status", 409, "Invalid Job Status"),
    InvalidJobUpdate: _ours("invalid-job-status", 409, "Invalid Job Status"),
    InvalidJobRequest: _ours("invalid-job", 422, "Invalid Job"),
    IdempotencyMismatch: _ours("idempotency-key-reused", 409, "Idempotency Key Reused"),
    TooLargeForSync: _ours("too-large-for-sync", 422, "Too Large For Sync"),
    errors.InvalidCursor: _ours("invalid-cursor", 404, "No Such Cursor"),
    TooManyJobs: _ours("too-many-jobs", 429, "Too Many Jobs", headers=_retry_after(60)),
    QueueUnavailable: _ours(
        "queue-unavailable",
        503,
        "Queue Unavailable",
        detail=lambda e: f"Cannot queue the job now: {e}; retry later",
        headers=_retry_after(5),
    ),
    # The records API's and legal holds'.
    errors.InvalidRecords: _ours(
        "invalid-records", 422, "Invalid Records", extensions=invalid.records_errors
    ),
    errors.RecordConflict: _ours("record-conflict", 409, "Record Conflict"),
    errors.RecordsSuppressed: _ours(
        "suppressed-number", 422, "Suppressed Number", extensions=invalid.records_errors
    ),
    errors.SuppressionNotFound: _ours("suppression-not-found", 404, "No Such Suppression"),
    errors.InvalidSuppression: _ours("invalid-suppression", 422, "Invalid Suppression"),
    errors.HoldNotFound: _ours("hold-not-found", 404, "No Such Hold"),
    errors.InvalidHold: _ours("invalid-hold", 422, "Invalid Hold"),
    errors.InvalidPolicy: _ours("invalid-policy", 422, "Invalid Policy"),
    # The proof API's. An invalid log range is a 404: the positions name no entry or tree
    # of the account's log (another account's log included: its positions are not this
    # account's).
    errors.NoReceipt: _ours("no-receipt", 409, "No Receipt"),
    errors.InvalidLogRange: _ours("invalid-log-range", 404, "No Such Log Range"),
    errors.NoSigningKey: _ours("no-signing-key", 503, "No Signing Key"),
    errors.KeyStoreUnusable: _ours("key-store-unusable", 503, "Key Store Unusable"),
    # The webhooks API's.
    errors.WebhookNotFound: _ours("webhook-not-found", 404, "No Such Webhook"),
    errors.InvalidWebhook: _ours("invalid-webhook", 422, "Invalid Webhook"),
    invalid.InvalidWebhookRequest: _ours(
        "invalid-webhook", 422, "Invalid Webhook", extensions=invalid.listed_errors
    ),
    errors.TooManyWebhooks: _ours("too-many-webhooks", 409, "Too Many Webhooks"),
    # The edge's (app/http/edge.py, app/http/admission.py).
    BodyTooLarge: _http(413, "Content Too Large"),
    BadContentLength: _http(400, "Bad Request"),
    UnroutablePath: _http(404, "Not Found"),
    Overloaded: _http(503, "Service Unavailable", headers=_retry_after(1)),
}

_PHRASES = {
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def as_problem(exc: Exception) -> Problem | Unauthorized:
    """The problem for any exception that reached the edge of the app (Unauthorized for
    the contract's 401)."""
    for cls in type(exc).__mro__:
        kind = CATALOGUE.get(cls)
        if kind is not None:
            return kind.of(exc)
    if isinstance(exc, Unauthorized):
        return exc
    if isinstance(exc, HTTPProblem):
        return _plain(exc.status, exc.detail, exc.headers, exc.extensions)
    if isinstance(exc, connexion.exceptions.ProblemException):
        if exc.status == 401:
            return Unauthorized()
        if exc.status == 415:
            # Connexion's media-type check: the contract says 422.
            detail = invalid.media_type_detail(str(exc.detail or exc.title))
            return CATALOGUE[InvalidJson].of(InvalidJson(detail))
        return _plain(exc.status, str(exc.detail or exc.title), dict(exc.headers or {}))
    if isinstance(exc, (peewee.OperationalError, OSError)) or _missing_table(exc):
        return _plain(
            503, "The transaction store is unavailable; retry later", {"Retry-After": "1"}
        )
    if isinstance(exc, starlette.exceptions.HTTPException):
        return _plain(exc.status_code, str(exc.detail), dict(exc.headers or {}))
    return _plain(500, "The server could not complete the request")


def _plain(
    status: int, detail: str, headers: dict | None = None, extensions: dict | None = None
) -> Problem:
    """RFC 7807 `about:blank`, with the status phrase as title."""
    return Problem(
        status,
        "about:blank",
        _PHRASES.get(status, "Error"),
        detail,
        headers or {},
        extensions or {},
    )


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
