"""Webhooks' outbox: an event is written (`enqueue`, one row per subscribed endpoint) in the
same transaction as the change it reports, so that an event exists if and only if its
cause committed; and an endpoint's events as the API and the CLI show them (deliveries).
Payloads carry ids, statuses and counts, never a record's content or a number.
"""

from __future__ import annotations

import datetime
import json
import secrets
from typing import NamedTuple

from models.errors import InvalidCursor
from models.store.base import utcnow
from models.store.pages import Page, paginate
from models.webhooks.rows import EVENT_TYPES, WebhookAttempt, WebhookEndpoint, WebhookEvent


def new_event_id() -> str:
    return "msg_" + secrets.token_hex(12)


def enqueue(
    api_key: str, type: str, data: dict, key: str, now: datetime.datetime | None = None
) -> int:
    """Write event `type` with `data` (ids, statuses, counts: never personal data) to the
    outbox of each of the account's endpoints that asked for it; how many were written.
    Call it inside the transaction that makes the change it reports: the event then
    commits, or not, with it."""
    assert type in EVENT_TYPES, type
    endpoints = [
        endpoint
        for endpoint in WebhookEndpoint.select(WebhookEndpoint.seq, WebhookEndpoint.events).where(
            (WebhookEndpoint.account == api_key) & (WebhookEndpoint.status == "enabled")
        )
        if type in endpoint.events
    ]
    if not endpoints:
        return 0
    now = now or utcnow()
    payload = json.dumps(
        {"type": type, "timestamp": now.isoformat().replace("+00:00", "Z"), "data": data},
        separators=(",", ":"),
    )
    WebhookEvent.insert_many(
        [
            {
                "id": new_event_id(),
                "endpoint": endpoint.seq,
                "api_key": api_key,
                "type": type,
                "key": key[:80],
                "payload": payload,
                "created": now,
                "next_attempt_at": now,
            }
            for endpoint in endpoints
        ]
    ).execute()
    return len(endpoints)


class Undelivered(NamedTuple):
    events: int
    """Events waiting to be delivered, retries included."""
    waited: float
    """How long (seconds) the oldest of them has waited since it was written; 0 if none."""


def undelivered(now: datetime.datetime) -> Undelivered:
    """The outbox's backlog, over every endpoint (for metrics)."""
    pending = WebhookEvent.select(WebhookEvent.created).where(WebhookEvent.status == "pending")
    oldest = pending.order_by(WebhookEvent.created).first()
    if oldest is None:
        return Undelivered(0, 0.0)
    return Undelivered(pending.count(), max((now - oldest.created).total_seconds(), 0.0))


def job_event_data(job, waiting: dict | None = None) -> dict:
    """A job as its events show it: id, status, counts, and what it left waiting (a job
    canceled while records of it waited for the premature window: as the jobs API shows
    it; null otherwise)."""
    return {"job": {"id": job.id, "status": job.status, "counts": job.counts, "waiting": waiting}}


def list_deliveries(
    endpoint: WebhookEndpoint,
    *,
    limit: int,
    starting_after: str | None = None,
    ending_before: str | None = None,
) -> Page:
    """The endpoint's events, newest first; a cursor is an event id of the endpoint."""

    def cursor(parameter: str, event_id: str | None):
        if event_id is None:
            return None
        row = WebhookEvent.get_or_none(
            (WebhookEvent.id == event_id) & (WebhookEvent.endpoint == endpoint.seq)
        )
        if row is None:
            raise InvalidCursor(parameter, event_id)
        return row.seq

    query = WebhookEvent.select().where(WebhookEvent.endpoint == endpoint.seq)
    return paginate(
        query,
        WebhookEvent.seq,
        True,
        limit,
        cursor("starting_after", starting_after),
        cursor("ending_before", ending_before),
    )


def delivery_resource(event: WebhookEvent) -> dict:
    """An event of an endpoint with its attempts, oldest first (the payload is not shown:
    the receiver has it, and it can be sent again only as it was)."""
    attempts = (
        WebhookAttempt.select()
        .where(WebhookAttempt.event == event.seq)
        .order_by(WebhookAttempt.seq)
    )
    return {
        "id": event.id,
        "object": "webhook_delivery",
        "type": event.type,
        "created": int(event.created.timestamp()),
        "status": event.status,
        "delivered": None if event.delivered_at is None else int(event.delivered_at.timestamp()),
        "next_attempt": (
            int(event.next_attempt_at.timestamp()) if event.status == "pending" else None
        ),
        "attempts": [
            {
                "at": int(attempt.at.timestamp()),
                "status_code": attempt.status_code,
                "error": attempt.error,
                "duration_ms": attempt.duration_ms,
            }
            for attempt in attempts
        ],
    }
