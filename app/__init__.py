"""The Redact service: a Connexion 3 AsyncApp, built by `create_app`."""

from __future__ import annotations

import datetime
import functools
import re
import warnings

# Connexion imports Starlette's test client at import time, which warns about httpx on
# every command-line run; the service does not use it.
warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
import pathlib
from collections.abc import Callable

import connexion
import starlette.exceptions
import yaml
from connexion.datastructures import MediaTypeDict
from connexion.exceptions import ProblemException, ResolverError
from connexion.lifecycle import ConnexionRequest
from connexion.middleware.context import ContextMiddleware
from connexion.middleware.exceptions import ExceptionMiddleware
from connexion.middleware.request_validation import RequestValidationMiddleware
from connexion.middleware.routing import RoutingMiddleware
from connexion.middleware.security import SecurityMiddleware
from connexion.middleware.server_error import ServerErrorMiddleware
from connexion.middleware.swagger_ui import SwaggerUIMiddleware
from connexion.options import SwaggerUIOptions
from connexion.resolver import Resolver

from models import open_database

from . import docs, health, metrics
from .admission import Admission
from .api import RedactApi
from .auth import Authenticator, basic_security_handler
from .context import RequestContextMiddleware
from .direct import DirectOperations
from .jobs_api import JOBS_PATH, JobsApi
from .problems import HTTPProblem, render
from .queue import JobQueue
from .ratelimit import RateLimits
from .settings import Settings
from .validation import ContractBodyValidator

SPEC_DIR = pathlib.Path(__file__).resolve().parent.parent / "openapi"


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class OperationResolver(Resolver):
    """Maps each operationId of the spec to its handler (ids such as `redact-message` are
    not importable names, so the default resolver cannot)."""

    def __init__(self, handlers: dict[str, Callable]):
        super().__init__()
        self.handlers = handlers

    def resolve_function_from_operation_id(self, operation_id: str) -> Callable:
        try:
            return self.handlers[operation_id]
        except KeyError:
            raise ResolverError(f"No handler for operationId {operation_id!r}") from None


def create_app(
    settings: Settings | None = None,
    *,
    clock: Callable[[], datetime.datetime] = utcnow,
) -> connexion.AsyncApp:
    """Build the service: database, limiter, authentication, the API and its errors.

    Nothing here touches the database: a service whose database is not there yet starts,
    says so on /readyz, and answers 503 problems until it is.
    """
    settings = settings or Settings.from_env()
    open_database(settings.database_url, subject_key=settings.subject_key_bytes)
    rate_limits = RateLimits(
        settings.ratelimit_storage_uri, settings.rate_limit, settings.auth_failure_limit
    )
    admission = Admission(settings.max_in_flight)
    authenticator = Authenticator(rate_limits, admission, settings.credential_cache_seconds, clock)
    api = RedactApi(settings, clock)
    queue = JobQueue(settings, clock)
    jobs_api = JobsApi(queue, clock)

    # Connexion's default stack minus what this service does not use (response validation,
    # lifespan); our context middleware outermost, so that every response, errors
    # included, carries the trace id and is logged.
    middlewares = [
        functools.partial(
            RequestContextMiddleware,
            max_body_bytes=settings.max_body_bytes,
            body_limits={JOBS_PATH: settings.max_job_body_bytes},
            routes=_routes(CONTRACTS),
            fixed_paths=FIXED_PATHS,
            observe=metrics.observe_request,
            admission=admission,
            render_error=_send_problem,
        ),
        ServerErrorMiddleware,
        ExceptionMiddleware,
        SwaggerUIMiddleware,
        RoutingMiddleware,
        SecurityMiddleware,
        RequestValidationMiddleware,
        # The Redact API's operation is answered here, without Connexion's per-request
        # handler decorators (app/direct.py says why); the jobs API goes on.
        functools.partial(DirectOperations, handlers=api.operations()),
        ContextMiddleware,
    ]
    app = connexion.AsyncApp(
        __name__,
        middlewares=middlewares,
        security_map={"basic": basic_security_handler(authenticator)},
        validator_map={"body": MediaTypeDict({"*/*json": ContractBodyValidator})},
    )
    # Routes outside the contracts. Connexion mounts the contracts at /v1/redact when the
    # app is first called, after these routes, so a GET of a document's path finds its
    # route first (another method on it meets the mount, and gets a 404 problem).
    metrics.register(app, queue, settings.metrics_token)
    docs.register(app)
    health.register(
        app,
        {
            "database": health.store_takes_writes,
            "limiter": rate_limits.reachable,
            "queue": queue.reachable,
        },
    )
    # One Swagger UI for both contracts, at /v1/redact/ui/ with a contract picker. The
    # contracts share their base path, where Connexion would serve only one document (and
    # which one depends on its sorting), so both documents are served by docs.py and both
    # contracts carry the same UI.
    ui = SwaggerUIOptions(serve_spec=False, swagger_ui_template_arguments={"urls": docs.CONTRACTS})
    app.add_api(
        SPEC_DIR / "redact.yml", resolver=OperationResolver(api.operations()), swagger_ui_options=ui
    )
    app.add_api(
        SPEC_DIR / "jobs.yml",
        name="jobs",
        strict_validation=True,
        resolver=OperationResolver(jobs_api.operations()),
        swagger_ui_options=ui,
    )
    # Connexion registers its own handlers for these; ours replace them.
    for error in (Exception, ProblemException):
        app.add_error_handler(error, render)
    app.add_error_handler(starlette.exceptions.HTTPException, _http_exception)
    app.settings = settings
    app.queue = queue
    return app


CONTRACTS = ("redact.yml", "jobs.yml")
BASE_PATH = "/v1/redact"
FIXED_PATHS = ("/healthz", "/readyz", "/metrics", *docs.DOCUMENTS, f"{docs.BASE_PATH}/ui/")


def _routes(spec_names) -> dict[str, str]:
    """`METHOD /path/{param}` of every operation of the contracts, by operationId."""
    routes = {}
    for name in spec_names:
        spec = yaml.safe_load((SPEC_DIR / name).read_text())
        for path, operations in spec["paths"].items():
            for method, operation in operations.items():
                if isinstance(operation, dict) and "operationId" in operation:
                    routes[operation["operationId"]] = f"{method.upper()} {BASE_PATH}{path}"
    return routes


@functools.cache
def _contract_paths() -> list[tuple[re.Pattern, str]]:
    """Each path of the contracts as a pattern, with the methods it allows."""
    methods: dict[str, list[str]] = {}
    for route in _routes(CONTRACTS).values():
        method, path = route.split(" ", 1)
        methods.setdefault(path, []).append(method)
    return [
        (
            re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(path)) + "$"),
            ", ".join(sorted(allowed)),
        )
        for path, allowed in methods.items()
    ]


async def _http_exception(request: ConnexionRequest, exc: starlette.exceptions.HTTPException):
    """The router's own errors (unknown path, wrong method) as problems. A wrong method's
    `Allow` lists what the contract allows on the path: the router, which holds one route
    per operation, names only the first operation's method."""
    headers = dict(exc.headers or {})
    path = request.scope["path"]
    if exc.status_code == 405:
        allowed = next(
            (methods for pattern, methods in _contract_paths() if pattern.match(path)), None
        )
        if allowed is not None:
            headers["Allow"] = allowed
    detail = f"No such path: {path}" if exc.status_code == 404 else str(exc.detail)
    return await render(request, HTTPProblem(exc.status_code, detail, headers))


async def _send_problem(scope, exc, send) -> None:
    """Answer with the problem for `exc` from outside Connexion's stack (the body-size
    check runs before it)."""
    response = await render(ConnexionRequest(scope), exc)
    headers = [(b"content-type", response.mimetype.encode())] + [
        (k.lower().encode(), str(v).encode()) for k, v in (response.headers or {}).items()
    ]
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": response.body.encode()})
