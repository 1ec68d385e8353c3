"""The account gate: the middleware step right after authentication.

An authenticated request (app/http/auth.py recorded its account in the request state)
first counts against its account's rate limit (app/http/ratelimit.py): over it, a 429 with
`Retry-After` and the `RateLimit` headers. An admitted request then takes its place in the
process (app/http/admission.py), or is shed (503) if its account already holds its fair
share, and gives the place back once answered. In that order, an account over its limit
gets its 429 before anything is shed.

The `RateLimit` headers ride on every response of an admitted request: the gate puts them
in the request state, and the edge (app/http/edge.py), which already sees each response
start, adds them. Requests with no account (operations without security, unknown paths)
pass through.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from app.http.admission import Admission, Overloaded
from app.http.problems import RateLimitHit
from app.http.ratelimit import RateLimits
from app.http.state import RequestState, request_state
from app.metrics import RATE_LIMITED


class Gatekeeper:
    """The gate's two steps for one request, shared by the middleware below and the front
    path (app/http/front.py)."""

    def __init__(self, rate_limits: RateLimits, admission: Admission):
        self.rate_limits = rate_limits
        self.admission = admission

    async def enter(self, api_key: str, state: RequestState) -> None:
        """Count the request against its account's limit (RateLimitHit over it), then take
        its place in the process (Overloaded if shed); `leave` gives the place back."""
        decision = await self.rate_limits.hit_account(api_key)
        headers = decision.headers()
        if not decision.allowed:
            RATE_LIMITED.labels(api_key).inc()
            raise RateLimitHit(max(1, decision.reset_seconds), headers)
        state.response_headers = headers
        try:
            self.admission.enter(api_key)
        except Overloaded:
            state.shed = True
            raise

    def leave(self, api_key: str) -> None:
        self.admission.leave(api_key)


class AccountGate:
    def __init__(self, app: ASGIApp, *, gatekeeper: Gatekeeper):
        self.app = app
        self.gatekeeper = gatekeeper

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = request_state(scope)
        api_key = state.api_key
        if api_key is None or state.gated:  # the front path holds its place
            await self.app(scope, receive, send)
            return
        await self.gatekeeper.enter(api_key, state)
        try:
            await self.app(scope, receive, send)
        finally:
            self.gatekeeper.leave(api_key)
