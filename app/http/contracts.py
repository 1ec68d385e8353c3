"""The contracts the service serves (openapi/), and what is read from them: each
operation's route, each path's methods, and the resolver that binds operationIds to
handlers."""

from __future__ import annotations

import functools
import itertools
import pathlib
import re
from collections.abc import Callable

import starlette.routing
import yaml
from connexion.exceptions import ResolverError
from connexion.middleware.routing import RoutingMiddleware
from connexion.resolver import Resolver

SPEC_DIR = pathlib.Path(__file__).resolve().parents[2] / "openapi"
CONTRACTS = ("redact.yml", "jobs.yml", "proof.yml", "records.yml", "webhooks.yml")
BASE_PATH = "/v1/redact"


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
