"""The front path: `POST /v1/redact/transaction` answered in one ASGI step, before
Connexion's middleware.

Under load, Connexion's stack (exception layers, Swagger UI's router, routing, security,
request validation: each an ASGI layer with its own scope copies and awaits) cost more
CPU per redaction than the redaction itself, and every worker's event loop shares its
GIL with the group commit's writer, which then waited for it (bench/README.md, "Where the
time goes"). The common request takes a short way here:

- an exact match of method and path, and a JSON body with a declared length;
- credentials the authenticator verified within its cache's lifetime (app/http/auth.py);
- the account gate (app/http/gate.py: the rate limit, then admission), before the body
  is read, as in Connexion's stack;
- the body parsed as Connexion's validation layer parses it and checked by the schema
  of the operation in openapi/redact.yml, as Connexion loads it, compiled by the same
  validator (app/http/validation.py): nothing of the contract is restated here;
- the handler (app/handlers/redact.py) and a 204, or the problem the error handler
  renders for what the gate or the handler raised.

Anything else goes on to Connexion and gets exactly what it got before this step existed:
a request without cached credentials, of another content type or chunked, untouched; a
body that is not valid JSON or breaks the schema, replayed as it was read, its gate
passed here and not again (`RequestState.gated`). The edge middleware (app/http/edge.py)
stays outside: the flood guard, the body cap, the log line and the metrics are the same
for both ways.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import fastjsonschema
from connexion.lifecycle import ConnexionRequest
from connexion.spec import Specification
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.http.auth import Authenticator, basic_credentials
from app.http.contracts import BASE_PATH, SPEC_DIR
from app.http.gate import Gatekeeper
from app.http.problems import Unauthorized, render
from app.http.state import request_state
from app.http.validation import InvalidJson, compiled_validator, parse_json_body

OPERATION = "redact-message"


def operation_body_schema(contract: str, path: str, method: str) -> dict:
    """The JSON request body schema of an operation, as Connexion loads the contract
    (references resolved)."""
    spec = Specification.load(SPEC_DIR / contract)
    return spec["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]


class FrontPath:
    def __init__(
        self,
        app: ASGIApp,
        *,
        authenticator: Authenticator,
        gatekeeper: Gatekeeper,
        handler: Callable[..., Awaitable],
    ):
        self.app = app
        self.authenticator = authenticator
        self.gatekeeper = gatekeeper
        self.handler = handler
        self.path = f"{BASE_PATH}/transaction"
        self.validate = compiled_validator(
            operation_body_schema("redact.yml", "/transaction", "post")
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        token_info = self._caller(scope)
        if token_info is None:
            await self.app(scope, receive, send)
            return
        state = request_state(scope)
        api_key = state.api_key = token_info["sub"]
        try:
            # As in Connexion's stack: the gate before the body is read, so that a request
            # whose body is still coming holds its place.
            await self.gatekeeper.enter(api_key, state)
        except Exception as exc:
            await send_problem(scope, exc, send)
            return
        state.gated = True
        try:
            raw = await _read_body(receive)
            body = self._parsed(raw)
            if body is None:  # Connexion's validation says what is wrong (its gate is passed)
                await self.app(scope, _replaying(raw, receive), send)
                return
            # What the log and the metrics name the request by, as Connexion's routing would.
            scope.setdefault("extensions", {})["connexion_routing"] = {"operation_id": OPERATION}
            try:
                response = await self.handler(
                    body=body, token_info=token_info, trace_id=state.trace_id
                )
            except Exception as exc:
                await send_problem(scope, exc, send)
                return
            await response(scope, receive, send)
        finally:
            self.gatekeeper.leave(api_key)

    def _caller(self, scope: Scope) -> dict | None:
        """The token info of the request's cached credentials; None if they are not."""
        content_type = length = authorization = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"content-type":
                content_type = value
            elif name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                return None
        if authorization is None or length is None or content_type != b"application/json":
            return None
        try:
            credentials = basic_credentials(authorization.decode("latin1"))
        except Unauthorized:
            return None
        return None if credentials is None else self.authenticator.cached(*credentials)

    def _parsed(self, raw: bytes) -> dict | None:
        """The body, parsed and valid under the operation's schema (defaults filled in);
        None if it is anything else (Connexion's validation then says what)."""
        try:
            body = parse_json_body(raw)
            if not isinstance(body, dict):
                return None
            self.validate(body)
        except (InvalidJson, fastjsonschema.JsonSchemaException):
            return None
        return body


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            break
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


def _replaying(raw: bytes, receive: Receive) -> Receive:
    """`receive` with the body already read given first."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": raw, "more_body": False}
        return await receive()

    return replay


async def send_problem(scope, exc: Exception, send) -> None:
    """`render`'s answer to `exc`, sent as Connexion's exception layer would (by the edge
    and the front path, outside its stack)."""
    response = await render(ConnexionRequest(scope), exc)
    extra = (response.headers or {}).items()
    headers = [(b"content-type", response.mimetype.encode())]
    headers += [(k.lower().encode(), str(v).encode()) for k, v in extra]
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": response.body.encode()})
