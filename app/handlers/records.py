"""Handlers of the records API (openapi/records.yml): records in and out, retention
policies, legal holds. Each takes what Connexion validated, calls the domain
(models/intake/, models/erasure/: policies, holds) and shapes the answer."""

from __future__ import annotations

from collections.abc import Callable

from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from app.metrics import RECORDS_STORED
from models.erasure.holds import create_hold, find_hold, hold_resource, list_holds, release_hold
from models.erasure.policies import policies_shown, set_policies
from models.erasure.suppression import (
    find_suppression,
    lift,
    list_suppressions,
    suppress,
    suppression_resource,
)
from models.errors import RecordsSuppressed
from models.intake.prepare import prepare_records
from models.intake.reading import read_record
from models.intake.storing import store_records_async
from models.store.base import Clock

RECORDS_PATH = "/v1/redact/records"
HOLDS_PATH = "/v1/redact/holds"
SUPPRESSIONS_PATH = "/v1/redact/suppressions"


def actor_of(api_key: str) -> str:
    """Who the audit trail says made a change through the API: the account."""
    return f"api:{api_key}"


class RecordsApi:
    def __init__(self, min_age_seconds: int, clock: Clock):
        self.min_age_seconds = min_age_seconds
        self.clock = clock

    def operations(self) -> dict[str, Callable]:
        return {
            "store-records": self.store,
            "retrieve-record": self.retrieve,
            "retrieve-policies": self.policies,
            "update-policies": self.update_policies,
            "create-hold": self.create_hold,
            "list-holds": self.list_holds,
            "retrieve-hold": self.retrieve_hold,
            "release-hold": self.release_hold,
            "create-suppression": self.create_suppression,
            "list-suppressions": self.list_suppressions,
            "retrieve-suppression": self.retrieve_suppression,
            "lift-suppression": self.lift_suppression,
        }

    async def store(self, body: dict, token_info: dict, trace_id: str):
        """POST /records: validated in a worker thread (the event loop serves other
        requests meanwhile), stored through the group commit, answered once committed.
        Answered by app/http/direct.py (the body is parsed once), as the Redact API is."""
        records = body["records"]
        prepared = await run_in_threadpool(prepare_records, records, token_info["sub"])
        if not prepared.rows:
            raise RecordsSuppressed(prepared.refused)
        counts = await store_records_async(prepared.rows, now=self.clock(), trace_id=trace_id)
        RECORDS_STORED.inc(counts.stored)
        return JSONResponse(
            {
                "received": len(records),
                "stored": counts.stored,
                "unchanged": counts.unchanged,
                "redacted_on_arrival": counts.redacted_on_arrival,
                "refused": [
                    {
                        "index": index,
                        "id": records[index]["id"],
                        "reason": "suppressed",
                        "fields": fields,
                    }
                    for index, fields in prepared.refused
                ],
            }
        )

    def retrieve(self, id: str, product: str, token_info: dict, type: str | None = None):
        return read_record(token_info["sub"], id, product, type)

    def policies(self, token_info: dict):
        return self._policies(token_info["sub"])

    def update_policies(self, body: dict, token_info: dict, trace_id: str):
        api_key = token_info["sub"]
        set_policies(
            api_key,
            body["products"],
            now=self.clock(),
            actor=actor_of(api_key),
            trace_id=trace_id,
        )
        return self._policies(api_key)

    def _policies(self, api_key: str) -> dict:
        return policies_shown(api_key, self.clock(), self.min_age_seconds)

    def create_hold(self, body: dict, token_info: dict, trace_id: str):
        api_key = token_info["sub"]
        hold = create_hold(
            api_key=api_key,
            subjects=body.get("subjects", ()),
            transactions=body.get("transactions", ()),
            reason=body["reason"],
            now=self.clock(),
            actor=actor_of(api_key),
            trace_id=trace_id,
        )
        return hold_resource(hold)

    def list_holds(
        self,
        token_info: dict,
        limit: int = 10,
        starting_after: str | None = None,
        ending_before: str | None = None,
        status: str | None = None,
    ):
        page = list_holds(
            token_info["sub"],
            limit=limit,
            starting_after=starting_after,
            ending_before=ending_before,
            status=status,
        )
        data = [hold_resource(hold) for hold in page.items]
        return {"object": "list", "url": HOLDS_PATH, "has_more": page.has_more, "data": data}

    def retrieve_hold(self, hold: str, token_info: dict):
        return hold_resource(find_hold(hold, token_info["sub"]))

    def release_hold(self, hold: str, token_info: dict, trace_id: str):
        api_key = token_info["sub"]
        released = release_hold(
            hold, api_key, now=self.clock(), actor=actor_of(api_key), trace_id=trace_id
        )
        return hold_resource(released)

    def create_suppression(self, body: dict, token_info: dict, trace_id: str):
        row, created = suppress(
            token_info["sub"], body["number"], now=self.clock(), source="api", trace_id=trace_id
        )
        return suppression_resource(row), 201 if created else 200

    def list_suppressions(self, token_info: dict, limit: int = 10, starting_after=None):
        page = list_suppressions(token_info["sub"], limit, starting_after)
        data = [suppression_resource(row) for row in page.items]
        return {"object": "list", "url": SUPPRESSIONS_PATH, "has_more": page.has_more, "data": data}

    def retrieve_suppression(self, suppression: str, token_info: dict):
        return suppression_resource(find_suppression(token_info["sub"], suppression))

    def lift_suppression(self, suppression: str, token_info: dict, trace_id: str):
        lift(token_info["sub"], suppression, now=self.clock(), source="api", trace_id=trace_id)
        return None, 204
