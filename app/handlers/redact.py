"""Handlers of the Redact API's operations. Each takes what Connexion validated, calls one
domain function and maps the outcome to a response."""

from __future__ import annotations

from collections.abc import Callable

from starlette.responses import Response

from app.metrics import REDACTIONS
from models import redact_transaction_async
from models.store.base import Clock


class RedactApi:
    def __init__(self, min_age_seconds: int, clock: Clock):
        self.min_age_seconds = min_age_seconds
        self.clock = clock

    def operations(self) -> dict[str, Callable]:
        """Handlers by the spec's operationId."""
        return {"redact-message": self.redact_message}

    async def redact_message(self, body: dict, token_info: dict, trace_id: str):
        """POST /transaction: 204 whether this call scrubbed the record or it already was;
        answered only once the scrub has committed (the event loop serves other requests
        while the batch holding it commits)."""
        scrubbed = await redact_transaction_async(
            api_key=token_info["sub"],
            products=token_info["products"],
            transaction_id=body["id"],
            product=body["product"],
            direction=body.get("type"),
            now=self.clock(),
            min_age_seconds=self.min_age_seconds,
            trace_id=trace_id,
        )
        if scrubbed:
            REDACTIONS.labels(body["product"]).inc()
        # A bare 204: Connexion would label a tuple with the operation's JSON content type.
        return Response(status_code=204)
