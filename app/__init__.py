"""The Redact service: a Connexion 3 app on Flask, built by `create_app`."""

from __future__ import annotations

import datetime
import functools
import warnings

# Connexion imports Starlette's test client at import time, which warns about httpx on
# every command-line run; the service does not use it.
warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
import pathlib
from typing import Callable

import connexion
import flask
import yaml
import starlette.exceptions
import werkzeug.exceptions
from a2wsgi import WSGIMiddleware
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
from .api import RedactApi
from .auth import Authenticator, basic_security_handler
from .context import RequestContextMiddleware
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
) -> connexion.FlaskApp:
    """Build the service: database, limiter, authentication, the API and its errors."""
    settings = settings or Settings.from_env()
    open_database(settings.database_url, subject_key=settings.subject_key_bytes)
    rate_limits = RateLimits(
        settings.ratelimit_storage_uri, settings.rate_limit, settings.auth_failure_limit
    )
    authenticator = Authenticator(rate_limits, settings.credential_cache_seconds, clock)
    api = RedactApi(settings, clock)
    queue = JobQueue(settings, clock)
    jobs_api = JobsApi(queue, clock)

    # Connexion's default stack minus what this service does not use (response validation,
    # lifespan); our context middleware outermost, so that every response, errors
    # included, carries the trace id and is logged.
    middlewares = [
        functools.partial(
            RequestContextMiddleware, max_body_bytes=settings.max_body_bytes,
            body_limits={JOBS_PATH: settings.max_job_body_bytes},
            routes=_routes(("redact.yml", "jobs.yml")), fixed_paths=FIXED_PATHS,
            observe=metrics.observe_request, max_in_flight=settings.max_in_flight,
            render_error=_send_problem,
        ),
        ServerErrorMiddleware,
        ExceptionMiddleware,
        SwaggerUIMiddleware,
        RoutingMiddleware,
        SecurityMiddleware,
        RequestValidationMiddleware,
        ContextMiddleware,
    ]
    app = connexion.FlaskApp(
        __name__,
        middlewares=middlewares,
        security_map={"basic": basic_security_handler(authenticator)},
        validator_map={"body": MediaTypeDict({"*/*json": ContractBodyValidator})},
    )
    # One Swagger UI for both contracts, at /v1/redact/ui/ with a contract picker. The
    # contracts share their base path, where Connexion would serve only one document (and
    # which one depends on its sorting), so both documents are served by docs.py and both
    # contracts carry the same UI.
    ui = SwaggerUIOptions(serve_spec=False,
                          swagger_ui_template_arguments={"urls": docs.CONTRACTS})
    app.add_api(SPEC_DIR / "redact.yml", resolver=OperationResolver(api.operations()),
                swagger_ui_options=ui)
    app.add_api(SPEC_DIR / "jobs.yml", name="jobs", strict_validation=True,
                resolver=OperationResolver(jobs_api.operations()), swagger_ui_options=ui)
    # Connexion registers its own handlers for these two; ours must replace them.
    for error in (Exception, ProblemException, starlette.exceptions.HTTPException):
        app.add_error_handler(error, render)

    flask_app = app.app
    # Connexion bridges to Flask through a2wsgi with a pool of 10 threads; a request holds
    # its thread while it waits for the database, so more threads mean more concurrent
    # redactions sharing each commit (GroupCommit).
    app._middleware_app.asgi_app = WSGIMiddleware(flask_app.wsgi_app,
                                                  workers=settings.threads)
    flask_app.register_error_handler(werkzeug.exceptions.HTTPException, _http_exception)
    metrics.register(flask_app, queue, settings.metrics_token)
    docs.register(flask_app)
    health.register(flask_app, {"database": health.database_reachable,
                                "limiter": rate_limits.reachable,
                                "queue": queue.reachable})

    app.settings = settings
    app.queue = queue
    return app


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


def _http_exception(exc: werkzeug.exceptions.HTTPException):
    """Flask's own HTTP errors (unknown path, wrong method) as problems, keeping headers
    such as `Allow`."""
    headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
    detail = f"No such path: {flask.request.path}" if exc.code == 404 else exc.description
    raise HTTPProblem(exc.code or 500, detail or "", headers)


async def _send_problem(scope, exc, send) -> None:
    """Answer with the problem for `exc` from outside Connexion's stack (the body-size
    check runs before it)."""
    response = await render(ConnexionRequest(scope), exc)
    headers = [(b"content-type", response.mimetype.encode())] + [
        (k.lower().encode(), str(v).encode()) for k, v in (response.headers or {}).items()
    ]
    await send({"type": "http.response.start", "status": response.status_code,
                "headers": headers})
    await send({"type": "http.response.body", "body": response.body.encode()})
