"""The outermost middleware.

`RequestContextMiddleware` creates the request's state (app/http/state.py: a fresh trace
id, the `instance` of any problem body it gets), sheds a flood of requests before anything
is read, caps the body size, adds the rate-limit headers the account gate computed
(app/http/gate.py) to the response, and writes one log line and one metric per request.
"""

from __future__ import annotations

import logging
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.http.admission import Overloaded
from app.http.state import SCOPE_KEY, RequestState

access_log = logging.getLogger("redact.access")


class BodyTooLarge(Exception):
    def __init__(self, limit: int):
        super().__init__(f"The request body exceeds the limit of {limit} bytes")
        self.limit = limit


class UnroutablePath(Exception):
    """A path no route has, answered before routing: one with control characters, or with
    a trailing slash (Starlette's router would redirect it, to a URL built from the
    client's Host header, and the contract has no 3xx)."""

    def __init__(self, path: str):
        super().__init__(f"No such path: {path!r}")


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class BadContentLength(Exception):
    def __init__(self):
        super().__init__("The Content-Length header is not a number of bytes")


class RequestContextMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        render_error,
        body_limits: dict[str, int] | None = None,
        routes: dict[str, str] | None = None,
        fixed_paths: tuple = (),
        observe=None,
        flood_limit: int | None = None,
    ):
        """`body_limits` maps path prefixes to their own body limit; `routes` maps the
        contracts' operationIds to their route templates, for the log; `fixed_paths` are
        the paths outside the contracts (health, metrics) logged as they are; `observe` is
        called with (operation, status, seconds) of each request (metrics; a shed request's
        operation is `shed`); beyond `flood_limit` requests in the process, a request is
        shed before anything else (app/http/admission.py)."""
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_limits = body_limits or {}
        self.render_error = render_error
        self.routes = routes or {}
        self.fixed_paths = frozenset(fixed_paths)
        self.observe = observe
        self.flood_limit = flood_limit
        self.requests = 0  # in this process, not yet answered (one event loop: no lock)

    def operation_of(self, scope: Scope) -> str | None:
        """The operationId that served the request, the path if it is one of the fixed
        paths, or None for an unknown path."""
        routing = scope.get("extensions", {}).get("connexion_routing", {})
        operation = routing.get("operation_id")
        if operation is None and scope["path"] in self.fixed_paths:
            operation = scope["path"]
        return operation

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        _normalise_content_type(scope)
        state = scope[SCOPE_KEY] = RequestState()
        trace_id = state.trace_id
        # Handlers receive the trace id through Connexion's context (for the audit row).
        scope.setdefault("extensions", {}).setdefault("connexion_context", {})["trace_id"] = (
            trace_id
        )
        status = 500
        limit = next(
            (size for prefix, size in self.body_limits.items() if scope["path"].startswith(prefix)),
            self.max_body_bytes,
        )

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                extra = state.response_headers
                if extra:
                    message = {
                        **message,
                        "headers": list(message.get("headers", ()))
                        + [(k.encode(), v.encode()) for k, v in extra.items()],
                    }
            await send(message)

        received = 0

        async def capped_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        self.requests += 1
        try:
            if (
                self.flood_limit is not None
                and self.requests > self.flood_limit
                and scope["path"] not in self.fixed_paths
            ):
                state.shed = True
                raise Overloaded()
            path = scope["path"]
            if _CONTROL.search(path) or (
                path.endswith("/") and path != "/" and path not in self.fixed_paths
            ):
                raise UnroutablePath(path)
            declared = _content_length(scope)
            if declared is not None and declared > limit:
                raise BodyTooLarge(limit)
            await self.app(scope, capped_receive, send_with_headers)
        except (BodyTooLarge, BadContentLength, UnroutablePath, Overloaded) as exc:
            await self.render_error(scope, exc, send_with_headers)
        finally:
            self.requests -= 1
            elapsed = time.perf_counter() - started
            operation = "shed" if state.shed else self.operation_of(scope)
            if self.observe is not None:
                self.observe(operation, status, elapsed)
            if access_log.isEnabledFor(logging.INFO):
                # The route, not the path: a path is the client's text and may hold
                # anything, a phone number included.
                access_log.info(
                    "request",
                    extra={
                        "fields": {
                            "method": scope["method"],
                            "route": self.routes.get(operation or "", operation),
                            "status": status,
                            "duration_ms": round(elapsed * 1000, 2),
                            "api_key": state.api_key,
                            "trace_id": trace_id,
                        }
                    },
                )


def _normalise_content_type(scope: Scope) -> None:
    """Lower-case the media type (`APPLICATION/JSON`), and take a missing one for JSON, the
    only type this API consumes. Connexion validates the body as JSON in both cases but
    hands it to the handler parsed only when the header says `application/json` exactly."""
    headers = scope["headers"]
    for index, (name, value) in enumerate(headers):
        if name == b"content-type":
            media_type, sep, parameters = value.partition(b";")
            if media_type != media_type.lower():
                headers = list(headers)
                headers[index] = (name, media_type.lower() + sep + parameters)
                scope["headers"] = headers
            return
    scope["headers"] = [*headers, (b"content-type", b"application/json")]


def _content_length(scope: Scope) -> int | None:
    """The declared body length, None if not declared."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            if not value.isdigit():
                raise BadContentLength()
            return int(value)
    return None
