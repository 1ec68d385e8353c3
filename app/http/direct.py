"""The hot operations, answered without Connexion's per-request handler machinery.

Connexion's AsyncApp calls a handler through decorators it builds anew for every request:
it inspects the handler's signature, parses the body a second time and converts the
answer. Profiled under load (bench/run.py, py-spy), that was ~40% of a worker's CPU on
the redaction path, against ~4% for the handler itself. A handler given here needs none
of it: its body was parsed and validated by the validation layer (app/http/validation.py
keeps the parsed body in the request state, app/http/state.py), and its caller is in the
security context.

So this middleware sits innermost, after Connexion's routing, security and validation
have run on the contract: for an operation it holds, it calls the handler with `body`,
`token_info` and `trace_id` and sends the Starlette response the handler returns. Every
other request (and any it cannot serve this way) goes on to Connexion's app, where the
resolver binds the same handlers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app.http.state import request_state

Handler = Callable[..., Awaitable[Response]]


class DirectOperations:
    def __init__(self, app: ASGIApp, *, handlers: dict[str, Handler]):
        self.app = app
        self.handlers = handlers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            extensions = scope.get("extensions", {})
            operation = extensions.get("connexion_routing", {}).get("operation_id")
            handler = self.handlers.get(operation)
            body = request_state(scope).body if handler is not None else None
            if handler is not None and body is not None:
                context = extensions["connexion_context"]
                response = await handler(
                    body=body, token_info=context["token_info"], trace_id=context["trace_id"]
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
