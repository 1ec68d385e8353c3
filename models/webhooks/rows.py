"""Webhooks' tables: an account's endpoints (`WebhookEndpoint`), the outbox of events for
them (`WebhookEvent`, one row per subscribed endpoint) and the attempts to deliver each
(`WebhookAttempt`); the event types and statuses they hold.
"""

from __future__ import annotations

import peewee

from models.records.account import Account
from models.records.transaction import JSONField
from models.store.base import BaseModel, UTCDateTimeField

EVENT_TYPES = (
    "job.succeeded",
    "job.failed",
    "job.canceled",
    "hold.created",
    "hold.released",
    "retention.completed",
)


EVENT_STATUSES = ("pending", "delivered", "failed")


class WebhookEndpoint(BaseModel):
    """Where an account wants its events: `url`, for the `events` it names. `seq` orders
    endpoints (newest first in lists); `id` is the public name. `secret` signs what is
    sent (shown once, when the endpoint is created)."""

    seq = peewee.AutoField()
    id = peewee.CharField(max_length=40, unique=True)
    account = peewee.ForeignKeyField(
        Account, column_name="api_key", on_delete="CASCADE", object_id_name="account_id"
    )
    account_id: str
    url = peewee.TextField()
    events = JSONField()
    secret = peewee.CharField(max_length=100)
    description = peewee.TextField(null=True)
    status = peewee.CharField(max_length=10, default="enabled")
    created = UTCDateTimeField()


class WebhookEvent(BaseModel):
    """The outbox: one event for one endpoint. `payload` is the body as sent, fixed when
    the event is written; `id` is its `webhook-id`, the same on every attempt (receivers
    dedupe by it). Only an endpoint's oldest `pending` event is sent, when
    `next_attempt_at` has come."""

    seq = peewee.AutoField()
    id = peewee.CharField(max_length=40, unique=True)
    endpoint = peewee.ForeignKeyField(WebhookEndpoint, field="seq", on_delete="CASCADE")
    api_key = peewee.CharField(max_length=64)
    type = peewee.CharField(max_length=40)
    key = peewee.CharField(max_length=80)
    """What the event is about (`job:<id>`, `hold:<id>`, `retention`)."""
    payload = peewee.TextField()
    created = UTCDateTimeField()
    status = peewee.CharField(max_length=10, default="pending")
    attempts = peewee.IntegerField(default=0)
    next_attempt_at = UTCDateTimeField()
    delivered_at = UTCDateTimeField(null=True)

    class Meta:
        indexes = ((("endpoint", "status", "seq"), False), (("status", "next_attempt_at"), False))


class WebhookAttempt(BaseModel):
    """One delivery attempt of an event: the receiver's status code, or why there was none."""

    seq = peewee.AutoField()
    event = peewee.ForeignKeyField(WebhookEvent, field="seq", on_delete="CASCADE")
    at = UTCDateTimeField()
    status_code = peewee.IntegerField(null=True)
    error = peewee.CharField(max_length=200, null=True)
    duration_ms = peewee.IntegerField()


WEBHOOK_MODELS = (WebhookEndpoint, WebhookEvent, WebhookAttempt)
