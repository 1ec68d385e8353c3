"""The Redact service: a Connexion 3 AsyncApp, built by `create_app`.

A newcomer's map (docs/architecture.md has the whole of it): the contracts in openapi/
are bound by app/http/contracts.py to the handlers in app/handlers/ (one module per
contract), each run in its operation's scope. A request passes the steps of `create_app`'s
middleware list in order: app/http/edge.py (its state, app/http/state.py; flood guard,
body size, log), app/http/front.py (the common redaction, answered at once), Connexion's
routing, app/http/auth.py (basic auth: who the caller is),
app/http/gate.py (the account's rate limit, then its place in the process),
app/http/validation.py, and app/http/direct.py (the hot operations) or Connexion's handler
call; a handler calls the domain in models/. app/http/problems.py renders every error. The
`redact` command is app/cli/.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import AsyncIterator

# Connexion imports Starlette's test client at import time, which warns about httpx on
# every command-line run; the service does not use it.
warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")

import connexion
import starlette.exceptions
from connexion.exceptions import ProblemException
from connexion.lifecycle import ConnexionRequest
from connexion.middleware.context import ContextMiddleware
from connexion.middleware.exceptions import ExceptionMiddleware
from connexion.middleware.lifespan import LifespanMiddleware
from connexion.middleware.request_validation import RequestValidationMiddleware
from connexion.middleware.security import SecurityMiddleware
from connexion.middleware.server_error import ServerErrorMiddleware
from connexion.middleware.swagger_ui import SwaggerUIMiddleware
from connexion.options import SwaggerUIOptions
from starlette.concurrency import run_in_threadpool

from app import docs, health, metrics
from app.handlers.jobs import JOBS_PATH, JobsApi
from app.handlers.proof import ProofApi
from app.handlers.records import HOLDS_PATH, RECORDS_PATH, RecordsApi
from app.handlers.redact import RedactApi
from app.handlers.webhooks import WebhooksApi
from app.http.admission import Admission
from app.http.auth import Authenticator, basic_security_handler
from app.http.contracts import (
    SPEC_DIR,
    ChainedRoutingMiddleware,
    OperationResolver,
    allowed_methods,
    routes,
)
from app.http.direct import DirectOperations
from app.http.edge import RequestContextMiddleware
from app.http.front import FrontPath, send_problem
from app.http.gate import AccountGate, Gatekeeper
from app.http.problems import HTTPProblem, render
from app.http.ratelimit import RateLimits
from app.http.validation import (
    ContractBodyValidator,
    RecordsBodyValidator,
    RedactBodyValidator,
    WebhooksBodyValidator,
    validator_map,
)
from app.services import Services, open_services
from app.settings import Settings
from models import utcnow
from models.store.base import Clock

FIXED_PATHS = ("/", "/healthz", "/readyz", "/metrics", *docs.DOCUMENTS, docs.PAGE)
"""Routes outside the contracts."""


class RedactApp(connexion.AsyncApp):
    """Connexion's AsyncApp, with the services it was built from (`services`)."""

    def __init__(self, services: Services, **options):
        super().__init__(__name__, **options)
        self.services = services


def create_app(
    settings: Settings | None = None, *, clock: Clock = utcnow, services: Services | None = None
) -> RedactApp:
    """Build the service: database, limiter, authentication, the API and its errors, on
    `services` if given (their owner closes them), else on services opened from the
    settings, which the app closes when its lifespan ends.

    Nothing here touches the database: a service whose database is not there yet starts,
    says so on /readyz, and answers 503 problems until it is.
    """
    owned = services is None
    if services is None:
        settings = settings or Settings.from_env()
        services = open_services(settings, clock)
    settings, clock = services.settings, services.clock
    rate_limits = RateLimits(
        settings.ratelimit_storage_uri, settings.rate_limit, settings.auth_failure_limit
    )
    admission = Admission(settings.max_in_flight)
    gatekeeper = Gatekeeper(rate_limits, admission)
    authenticator = Authenticator(rate_limits, settings.credential_cache_seconds, clock)
    api = RedactApi(settings.min_age_seconds, clock)
    jobs_api = JobsApi(services.jobs)
    records_api = RecordsApi(settings.min_age_seconds, clock)
    proof_api = ProofApi(services.store, clock)
    webhooks_api = WebhooksApi(clock)

    @contextlib.asynccontextmanager
    async def lifespan(_) -> AsyncIterator[None]:
        """What the app holds is given back when it stops: this event loop's limiter
        connections, the hash-check threads, and the services it opened."""
        async with contextlib.AsyncExitStack() as closing:  # each, whatever the others do
            if owned:
                closing.push_async_callback(run_in_threadpool, services.close)
            closing.push_async_callback(run_in_threadpool, authenticator.close)
            closing.push_async_callback(rate_limits.aclose)
            yield

    # Connexion's default stack minus what this service does not use (response
    # validation); our edge middleware outermost, so that every response, errors included,
    # carries the trace id and is logged.
    middlewares = [
        functools.partial(
            RequestContextMiddleware,
            max_body_bytes=settings.max_body_bytes,
            body_limits={
                JOBS_PATH: settings.max_job_body_bytes,
                HOLDS_PATH: settings.max_job_body_bytes,  # holds name records as jobs do
                RECORDS_PATH: settings.max_records_body_bytes,
            },
            routes=routes(),
            fixed_paths=FIXED_PATHS,
            observe=metrics.observe_request,
            flood_limit=admission.flood_limit,
            render_error=send_problem,
        ),
        # The Redact API's operation, when it comes with cached credentials and a valid
        # body, is answered here at once (app/http/front.py); everything else goes on.
        functools.partial(
            FrontPath,
            authenticator=authenticator,
            gatekeeper=gatekeeper,
            handler=api.redact_message,
        ),
        ServerErrorMiddleware,
        ExceptionMiddleware,
        SwaggerUIMiddleware,
        ChainedRoutingMiddleware,
        SecurityMiddleware,
        # Authentication recorded the caller; its account's rate limit (429 first), then
        # its place in the process (503 if its account holds its share).
        functools.partial(AccountGate, gatekeeper=gatekeeper),
        RequestValidationMiddleware,
        # The Redact API's operation and storing records are answered here, without
        # Connexion's per-request handler decorators (app/http/direct.py says why); the rest
        # goes on.
        functools.partial(
            DirectOperations,
            handlers={**api.operations(), "store-records": records_api.store},
        ),
        LifespanMiddleware,
        ContextMiddleware,
    ]
    app = RedactApp(
        services,
        lifespan=lifespan,
        middlewares=middlewares,
        security_map={"basic": basic_security_handler(authenticator)},
        validator_map=validator_map(ContractBodyValidator),
    )
    # Routes outside the contracts. Connexion mounts the contracts at /v1/redact when the
    # app is first called, after these routes, so a GET of a document's path finds its
    # route first (another method on it meets the mount, and gets a 404 problem).
    metrics.register(app, services.queue, settings.metrics_token, settings.min_age_seconds, clock)
    services.store.group_commit.observer = metrics.observe_commit
    docs.register(app)
    health.register(
        app,
        {
            "database": health.store_takes_writes(services.store),
            "limiter": rate_limits.reachable,
            "queue": services.queue.reachable,
        },
    )
    # One Swagger UI for the contracts, at /v1/redact/ui/ with a contract picker. The
    # contracts share their base path, where Connexion would serve only one document (and
    # which one depends on its sorting), so the documents are served by docs.py and every
    # contract carries the same UI.
    ui = SwaggerUIOptions(serve_spec=False, swagger_ui_template_arguments={"urls": docs.PICKER})
    app.add_api(
        SPEC_DIR / "redact.yml",
        resolver=OperationResolver(api.operations()),
        swagger_ui_options=ui,
        validator_map=validator_map(RedactBodyValidator),
    )
    app.add_api(
        SPEC_DIR / "jobs.yml",
        name="jobs",
        strict_validation=True,
        resolver=OperationResolver(jobs_api.operations()),
        swagger_ui_options=ui,
    )
    app.add_api(
        SPEC_DIR / "proof.yml",
        name="proof",
        strict_validation=True,
        resolver=OperationResolver(proof_api.operations()),
        swagger_ui_options=ui,
    )
    app.add_api(
        SPEC_DIR / "records.yml",
        name="records",
        strict_validation=True,
        resolver=OperationResolver(records_api.operations()),
        swagger_ui_options=ui,
        validator_map=validator_map(RecordsBodyValidator),
    )
    app.add_api(
        SPEC_DIR / "webhooks.yml",
        name="webhooks",
        strict_validation=True,
        resolver=OperationResolver(webhooks_api.operations()),
        swagger_ui_options=ui,
        validator_map=validator_map(WebhooksBodyValidator),
    )
    # Connexion registers its own handlers for these; ours replace them.
    for error in (Exception, ProblemException):
        app.add_error_handler(error, render)
    app.add_error_handler(starlette.exceptions.HTTPException, _http_exception)
    return app


async def _http_exception(request: ConnexionRequest, exc: starlette.exceptions.HTTPException):
    """The router's own errors (unknown path, wrong method) as problems. A wrong method's
    `Allow` lists what the contract allows on the path: the router, which holds one route
    per operation, names only the first operation's method."""
    headers = dict(exc.headers or {})
    path = request.scope["path"]
    if exc.status_code == 405:
        allowed = allowed_methods(path)
        if allowed is not None:
            headers["Allow"] = allowed
    detail = f"No such path: {path}" if exc.status_code == 404 else str(exc.detail)
    return await render(request, HTTPProblem(exc.status_code, detail, headers))
