"""The contracts the service serves (openapi/), and what is read from them: each
operation's route, each path's methods, and the resolver that binds operationIds to
handlers, each run in its operation's scope (`in_operation_scope`)."""

from __future__ import annotations

import functools
import inspect
import itertools
import pathlib
import re
from collections.abc import Callable
from typing import Any

import connexion.context
import starlette.routing
import yaml
from connexion.exceptions import ResolverError
from connexion.middleware.routing import RoutingMiddleware
from connexion.resolver import Resolver
from connexion.utils import make_type
from starlette.datastructures import Headers

from models import database

SPEC_DIR = pathlib.Path(__file__).resolve().parents[2] / "openapi"
CONTRACTS = ("redact.yml", "jobs.yml", "proof.yml", "records.yml", "webhooks.yml")
BASE_PATH = "/v1/redact"


class OperationResolver(Resolver):
    """Maps each operationId of the spec to its handler (ids such as `redact-message` are
    not importable names, so the default resolver cannot), run in its operation's scope
    (`in_operation_scope`)."""

    def __init__(self, handlers: dict[str, Callable]):
        super().__init__()
        self.handlers = handlers

    def resolve_function_from_operation_id(self, operation_id: str) -> Callable:
        try:
            return in_operation_scope(self.handlers[operation_id])
        except KeyError:
            raise ResolverError(f"No handler for operationId {operation_id!r}") from None


def in_operation_scope(handler: Callable) -> Callable:
    """`handler` as Connexion calls it, with what Connexion leaves out:

    - the header parameters the operation declares, as arguments (`Idempotency-Key` as
      `idempotency_key`), for those the handler takes: Connexion 3 passes path, query and
      body parameters only;
    - for a plain `def` handler (Connexion runs it in Starlette's thread pool), one database
      connection for the whole call (`database.connection_context()`), given back when it
      returns. An `async def` handler gets none: it runs on the event loop, and its store
      work goes through the group commit, so it holds no pooled connection while it waits.

    Connexion reads the handler's own signature through the wrapper (`__wrapped__`).
    """
    headers = _DeclaredHeaders(handler)
    if inspect.iscoroutinefunction(handler):

        @functools.wraps(handler)
        async def run_async(*args, **kwargs):
            return await handler(*args, **kwargs, **headers.arguments())

        return run_async

    @functools.wraps(handler)
    def run(*args, **kwargs):
        with database.connection_context():
            return handler(*args, **kwargs, **headers.arguments())

    return run


class _DeclaredHeaders:
    """The header parameters of the current request's operation that `handler` takes, read
    from the operation on its first call (the resolver is asked before Connexion has read
    the operation's parameters)."""

    def __init__(self, handler: Callable):
        self.accepted = frozenset(inspect.signature(handler).parameters)
        self.declared: list[tuple[str, str, dict]] | None = None

    def arguments(self) -> dict[str, Any]:
        declared = self.declared
        if declared is None:
            declared = self.declared = [
                (parameter["name"], argument, parameter.get("schema", {}))
                for parameter in connexion.context.operation.parameters
                if parameter["in"] == "header"
                and (argument := parameter["name"].lower().replace("-", "_")) in self.accepted
            ]
        if not declared:
            return {}
        received = Headers(scope=connexion.context.scope)
        return {
            argument: make_type(received[name], schema.get("type", "string"), schema.get("format"))
            for name, argument, schema in declared
            if name in received
        }


class ChainedRoutingMiddleware(RoutingMiddleware):
    """Connexion's routing, with contracts that share a base path chained in the order
    they were added: a request no route of one contract matches goes on to the next.

    Connexion 3.3 points every earlier contract on the path at the newest one as it adds
    it, so that with three the middle one is never reached (its paths answer 404 from
    the last); after each addition the chain is set right again."""

    def add_api(self, *args, **kwargs) -> None:
        super().add_api(*args, **kwargs)
        routers: dict[str, list[starlette.routing.Router]] = {}
        for route in self.router.routes:
            if isinstance(route, starlette.routing.Mount) and isinstance(
                route.app, starlette.routing.Router
            ):
                routers.setdefault(route.path, []).append(route.app)
        for chain in routers.values():
            for earlier, later in itertools.pairwise(chain):
                earlier.default = later


@functools.cache
def routes(spec_names: tuple[str, ...] = CONTRACTS) -> dict[str, str]:
    """`METHOD /path/{param}` of every operation of the contracts, by operationId (read
    once per process: every app a process builds serves the same files; do not modify)."""
    routes = {}
    for name in spec_names:
        spec = yaml.safe_load((SPEC_DIR / name).read_text())
        for path, operations in spec["paths"].items():
            for method, operation in operations.items():
                if isinstance(operation, dict) and "operationId" in operation:
                    routes[operation["operationId"]] = f"{method.upper()} {BASE_PATH}{path}"
    return routes


@functools.cache
def contract_paths() -> list[tuple[re.Pattern, str]]:
    """Each path of the contracts as a pattern, with the methods it allows."""
    methods: dict[str, list[str]] = {}
    for route in routes(CONTRACTS).values():
        method, path = route.split(" ", 1)
        methods.setdefault(path, []).append(method)
    return [
        (
            re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(path)) + "$"),
            ", ".join(sorted(allowed)),
        )
        for path, allowed in methods.items()
    ]


def allowed_methods(path: str) -> str | None:
    """The methods the contracts allow on `path` (as an `Allow` header), None if no path of
    theirs matches."""
    return next((methods for pattern, methods in contract_paths() if pattern.match(path)), None)
