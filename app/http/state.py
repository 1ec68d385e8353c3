"""The state of one request, one typed object that the layers it passes share.

The edge middleware (app/http/edge.py) creates it as the request arrives; each layer
then writes what it learned, and the later ones read it:

- `trace_id`: the edge, at once (the `instance` of any problem body, the audit row);
- `api_key`: authentication (app/http/auth.py), once the caller is known;
- `response_headers`: the account gate (app/http/gate.py), the rate-limit headers every
  response of an admitted request carries (the edge adds them as the response starts);
- `shed`: whoever sheds the request (the edge's flood guard, authentication's bounded
  line of hash checks, the gate), so that metrics and the log say so;
- `body`: request validation (app/http/validation.py), the JSON body as parsed and
  validated, which the direct path (app/http/direct.py) hands its handler;
- `gated`: the front path (app/http/front.py), which passed the account gate for a
  request it then leaves to Connexion: the gate does not count it twice.
"""

from __future__ import annotations

import dataclasses
import typing as t
import uuid

from starlette.types import Scope

SCOPE_KEY = "redact.request"
"""The one key of the ASGI scope that holds the request's state."""


def _trace_id() -> str:
    return uuid.uuid4().hex


@dataclasses.dataclass(slots=True)
class RequestState:
    trace_id: str = dataclasses.field(default_factory=_trace_id)
    api_key: str | None = None
    response_headers: dict[str, str] | None = None
    shed: bool = False
    body: t.Any = None
    gated: bool = False


def request_state(scope: Scope) -> RequestState:
    """The state of the request `scope` belongs to (created here for a scope the edge did
    not see, such as an error rendered outside it)."""
    state = scope.get(SCOPE_KEY)
    if state is None:
        state = scope[SCOPE_KEY] = RequestState()
    return state
