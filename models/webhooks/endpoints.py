"""Webhooks' endpoints: registering one (its URL checked, a signing secret made), finding,
listing and deleting an account's, and an endpoint as the API and the CLI show it.
"""

from __future__ import annotations

import base64
import datetime
import secrets
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from typing import Any

import peewee

from models.errors import InvalidWebhook, TooManyWebhooks, WebhookNotFound
from models.store.base import database, find_owned
from models.store.pages import Page, newest_first
from models.webhooks.rows import (
    EVENT_STATUSES,
    EVENT_TYPES,
    WebhookAttempt,
    WebhookEndpoint,
    WebhookEvent,
)

MAX_ENDPOINTS = 10
"""Endpoints per account: one account's endpoints share the delivery threads with all the
others'."""


MAX_URL_LENGTH = 2000


def new_webhook_id() -> str:
    return "whk_" + secrets.token_hex(12)


def new_secret() -> str:
    """A signing secret in the Standard Webhooks format: `whsec_` and base64 of 24 bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def check_url(url: str) -> str:
    """The URL, if events can be sent to it (http or https, with a host); InvalidWebhook
    otherwise."""
    if len(url) > MAX_URL_LENGTH or any(not 33 <= ord(c) <= 126 for c in url):
        raise InvalidWebhook(
            f"url: at most {MAX_URL_LENGTH} characters, printable ASCII (percent-encode the rest)"
        )
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a port that is no port)
    except ValueError:
        raise InvalidWebhook("url: not a URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidWebhook("url: an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise InvalidWebhook("url: credentials do not belong in the URL")
    return url


def create_webhook(
    *,
    api_key: str,
    url: str,
    events: Iterable[str],
    description: str | None,
    now: datetime.datetime,
) -> WebhookEndpoint:
    """Register an endpoint of the account for `events`, with a new signing secret.
    InvalidWebhook for a URL events cannot be sent to, or no event or an unknown one;
    TooManyWebhooks for an account with MAX_ENDPOINTS endpoints already."""
    check_url(url)
    wanted = list(dict.fromkeys(events))
    if not wanted:
        raise InvalidWebhook("events: name at least one event")
    for event in wanted:
        if event not in EVENT_TYPES:
            raise InvalidWebhook(f"events: {event!r} is not one of {', '.join(EVENT_TYPES)}")
    if description is not None and "\x00" in description:
        raise InvalidWebhook("description: no NUL character")
    with database.atomic():
        if WebhookEndpoint.select().where(WebhookEndpoint.account == api_key).count() >= (
            MAX_ENDPOINTS
        ):
            raise TooManyWebhooks(MAX_ENDPOINTS)
        return WebhookEndpoint.create(
            id=new_webhook_id(),
            account=api_key,
            url=url,
            events=wanted,
            secret=new_secret(),
            description=description,
            created=now,
        )


def find_webhook(webhook_id: str, api_key: str | None = None) -> WebhookEndpoint:
    """The endpoint `webhook_id` of account `api_key` (None: any, for operators);
    WebhookNotFound for an unknown id or another account's endpoint."""
    return find_owned(WebhookEndpoint, webhook_id, api_key, WebhookNotFound)


def list_webhooks(
    api_key: str, *, limit: int, starting_after: str | None = None, ending_before: str | None = None
) -> Page:
    """The account's endpoints, newest first, a page at a time (cursors as holds take them)."""
    return newest_first(WebhookEndpoint, api_key, limit, starting_after, ending_before, None)


def delete_webhook(webhook_id: str, api_key: str | None = None) -> WebhookEndpoint:
    """Delete the account's endpoint (WebhookNotFound otherwise), its secret and its
    events: those not yet delivered are dropped."""
    with database.atomic():
        endpoint = find_webhook(webhook_id, api_key)
        events = WebhookEvent.select(WebhookEvent.seq).where(WebhookEvent.endpoint == endpoint.seq)
        WebhookAttempt.delete().where(WebhookAttempt.event.in_(events)).execute()
        WebhookEvent.delete().where(WebhookEvent.endpoint == endpoint.seq).execute()
        WebhookEndpoint.delete().where(WebhookEndpoint.seq == endpoint.seq).execute()
    return endpoint


def webhook_resource(endpoint: WebhookEndpoint, *, secret: bool = False) -> dict:
    """An endpoint as the API and the CLI show it, with how many of its events are
    pending, delivered and failed; its secret only when `secret` (once, at creation)."""
    counts = dict.fromkeys(EVENT_STATUSES, 0)
    rows: list[Any] = list(
        WebhookEvent.select(WebhookEvent.status, peewee.fn.COUNT(WebhookEvent.seq))
        .where(WebhookEvent.endpoint == endpoint.seq)
        .group_by(WebhookEvent.status)
        .tuples()
    )
    counts.update(dict(rows))
    shown = {
        "id": endpoint.id,
        "object": "webhook_endpoint",
        "url": endpoint.url,
        "events": list(endpoint.events),
        "description": endpoint.description,
        "created": int(endpoint.created.timestamp()),
        "deliveries": counts,
    }
    if secret:
        shown["secret"] = endpoint.secret
    return shown
