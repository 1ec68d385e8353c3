"""The contracts the service serves (openapi/), and what is read from them: each
operation's route, each path's methods, and the resolver that binds operationIds to
handlers."""

from __future__ import annotations

import functools
import pathlib
import re
from collections.abc import Callable

import yaml
from connexion.exceptions import ResolverError
from connexion.resolver import Resolver

SPEC_DIR = pathlib.Path(__file__).resolve().parent.parent / "openapi"
CONTRACTS = ("redact.yml", "jobs.yml")
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
