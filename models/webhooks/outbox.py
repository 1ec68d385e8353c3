"""Webhooks: an account's endpoints, the outbox of events for them, and delivering it.

An event is written to the outbox (`WebhookEvent`, one row per subscribed endpoint) in
the same transaction as the change it reports (`enqueue`), so that an event exists if and
only if its cause committed. The job worker (and `redact serve`) delivers the outbox
(`Dispatcher`, `deliver_due`): signed as Standard Webhooks specify, at least once, each
attempt recorded; a failed attempt is retried with exponential backoff until the event
is `give_up_seconds` old. An endpoint gets its events strictly in the order they were
written (only its oldest undelivered event is ever sent), which keeps a job's events in
order. Payloads carry ids, statuses and counts, never a record's content or a number.
"""

from __future__ import annotations

import base64
import concurrent.futures
import dataclasses
import datetime
import ipaddress
import json
import logging
import secrets
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from typing import Any

import peewee
import standardwebhooks

from models.errors import InvalidCursor, InvalidWebhook, TooManyWebhooks, WebhookNotFound
from models.records.account import Account
from models.records.transaction import JSONField
from models.store.base import BaseModel, Clock, UTCDateTimeField, database, find_owned, utcnow
from models.store.pages import Page, newest_first, paginate

log = logging.getLogger("redact.webhooks")

EVENT_TYPES = (
    "job.succeeded",
    "job.failed",
    "job.canceled",
    "hold.created",
    "hold.released",
    "retention.completed",
)
EVENT_STATUSES = ("pending", "delivered", "failed")
MAX_ENDPOINTS = 10
"""Endpoints per account: one account's endpoints share the delivery threads with all the
others'."""
MAX_URL_LENGTH = 2000


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


# ----------------------------------------------------------------------------- endpoints


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


# -------------------------------------------------------------------------------- events


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


def job_event_data(job) -> dict:
    """A job as its events show it: id, status and counts."""
    return {"job": {"id": job.id, "status": job.status, "counts": job.counts}}


# ------------------------------------------------------------------------------ delivery


@dataclasses.dataclass(frozen=True)
class DeliveryConfig:
    """How events are delivered (REDACT_WEBHOOK_* settings)."""

    timeout_seconds: float = 10
    retry_base_seconds: float = 5
    retry_max_seconds: float = 6 * 3600
    give_up_seconds: float = 3 * 24 * 3600
    poll_seconds: float = 2
    threads: int = 8
    per_pass: int = 100
    """Events one endpoint is sent in a row before the others have their turn."""
    allow_private: bool = False
    """Whether events may go to loopback, private, link-local or reserved addresses: off,
    so that no tenant reaches the service's own network through a webhook."""

    @property
    def claim_seconds(self) -> float:
        """How long an attempt keeps its event from other workers: past its timeout, so
        that an attempt never overlaps another; a worker killed mid-attempt leaves the
        event to be sent again after it."""
        return self.timeout_seconds + 5

    def backoff(self, attempts: int) -> datetime.timedelta:
        """The wait after the `attempts`-th failed attempt: the base, doubling, capped."""
        seconds = self.retry_base_seconds * 2 ** min(attempts - 1, 40)
        return datetime.timedelta(seconds=min(seconds, self.retry_max_seconds))


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is a failed attempt: the endpoint is the URL registered, nothing else."""

    def redirect_request(self, *args, **kwargs):
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


@dataclasses.dataclass
class Outcome:
    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def refused_address(url: str) -> str | None:
    """Why events may not go to `url` unless private addresses are allowed: the reason if
    its host is, or resolves to, a loopback, private, link-local, multicast or reserved
    address; None if every address it resolves to is public."""
    parts = urllib.parse.urlsplit(url)
    try:
        found = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as exc:
        return f"cannot resolve {parts.hostname}: {exc}"[:200]
    for *_, address in found:
        ip = ipaddress.ip_address(address[0])
        if not ip.is_global or ip.is_multicast:
            return f"refused: {parts.hostname} is a non-public address ({ip})"
    return None


def post(
    url: str, secret: str, event_id: str, body: str, timeout: float, allow_private: bool = False
) -> Outcome:
    """POST `body` to `url`, signed with `secret` (Standard Webhooks headers), unless its
    host is a non-public address and those are not allowed (`refused_address`). The
    timestamp is the wall clock's: receivers reject a signature more than minutes off."""
    if not allow_private:
        refused = refused_address(url)
        if refused:
            return Outcome(None, refused, 0)
    sent_at = datetime.datetime.now(datetime.UTC)
    headers = {
        "content-type": "application/json",
        "user-agent": "redact-webhooks/1",
        "webhook-id": event_id,
        "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": standardwebhooks.Webhook(secret).sign(event_id, sent_at, body),
    }
    request = urllib.request.Request(url, data=body.encode(), headers=headers, method="POST")
    started = time.monotonic()
    status: int | None = None
    error: str | None = None
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            status = response.status
            response.read(65536)  # what a receiver says is not kept
    except urllib.error.HTTPError as exc:
        status = exc.code
        exc.close()
    except Exception as exc:  # any failure to deliver is an attempt that failed
        reason = getattr(exc, "reason", None) or exc
        error = f"{type(exc).__name__}: {reason}"[:200]
    return Outcome(status, error, int((time.monotonic() - started) * 1000))


def due_endpoints(now: datetime.datetime, skip: Iterable[int] = ()) -> list[tuple[int, str]]:
    """Endpoints (seq, account) whose oldest pending event is due by `now`."""
    heads = (
        WebhookEvent.select(
            WebhookEvent.endpoint.alias("endpoint"), peewee.fn.MIN(WebhookEvent.seq).alias("head")
        )
        .where(WebhookEvent.status == "pending")
        .group_by(WebhookEvent.endpoint)
    )
    rows: list[Any] = list(
        WebhookEvent.select(WebhookEvent.endpoint, WebhookEvent.api_key)
        .join(heads, on=(WebhookEvent.seq == heads.c.head))
        .where(WebhookEvent.next_attempt_at <= now)
        .tuples()
    )
    skipped = set(skip)
    return [(endpoint, api_key) for endpoint, api_key in rows if endpoint not in skipped]


def deliver_endpoint(endpoint_seq: int, clock: Clock, config: DeliveryConfig) -> int:
    """Send the endpoint's due events, oldest first, until one fails, none is due or
    `config.per_pass` were sent; how many were delivered. Each event is claimed first (its
    next attempt moved past this one's timeout), so that two workers never send it at
    once; the outcome is recorded after the request, in its own transaction: a worker
    killed between the two leaves the event pending, and it is sent again, with the same
    `webhook-id`."""
    delivered = 0
    for _ in range(max(config.per_pass, 1)):
        with database.atomic():
            endpoint = WebhookEndpoint.get_or_none(WebhookEndpoint.seq == endpoint_seq)
            event = (
                WebhookEvent.select()
                .where((WebhookEvent.endpoint == endpoint_seq) & (WebhookEvent.status == "pending"))
                .order_by(WebhookEvent.seq)
                .first()
            )
            now = clock()
            if endpoint is None or event is None or event.next_attempt_at > now:
                return delivered
            claimed = (
                WebhookEvent.update(
                    next_attempt_at=now + datetime.timedelta(seconds=config.claim_seconds)
                )
                .where(
                    (WebhookEvent.seq == event.seq)
                    & (WebhookEvent.status == "pending")
                    & (WebhookEvent.next_attempt_at == event.next_attempt_at)
                )
                .execute()
            )
            if not claimed:  # another worker's attempt is under way
                return delivered
        outcome = post(
            endpoint.url,
            endpoint.secret,
            event.id,
            event.payload,
            config.timeout_seconds,
            config.allow_private,
        )
        if not record_attempt(event, outcome, clock(), config):
            return delivered
        delivered += 1
    return delivered


def record_attempt(
    event: WebhookEvent, outcome: Outcome, now: datetime.datetime, config: DeliveryConfig
) -> bool:
    """Record an attempt and what it means for the event: delivered, to be retried after
    its backoff, or failed for good once the event is `give_up_seconds` old. Whether it
    was delivered. An event dropped meanwhile (its endpoint deleted) is left gone."""
    attempts = event.attempts + 1
    changes: dict[str, Any] = {"attempts": attempts}
    if outcome.delivered:
        changes.update(status="delivered", delivered_at=now)
    elif now - event.created >= datetime.timedelta(seconds=config.give_up_seconds):
        changes.update(status="failed")
    else:
        changes.update(next_attempt_at=now + config.backoff(attempts))
    with database.atomic():
        updated = (
            WebhookEvent.update(changes)
            .where((WebhookEvent.seq == event.seq) & (WebhookEvent.status == "pending"))
            .execute()
        )
        if updated:
            WebhookAttempt.create(
                event=event.seq,
                at=now,
                status_code=outcome.status_code,
                error=outcome.error,
                duration_ms=outcome.duration_ms,
            )
    if changes.get("status") == "failed":
        log.warning(
            "webhook event given up",
            extra={"fields": {"event": event.id, "api_key": event.api_key, "attempts": attempts}},
        )
    return outcome.delivered and bool(updated)


def deliver_due(clock: Clock = utcnow, config: DeliveryConfig | None = None) -> int:
    """Deliver every due event now, the endpoints side by side (one thread each, up to
    `config.threads`), and wait for them; how many were delivered (tests, and `redact
    webhooks deliver`)."""
    config = config or DeliveryConfig()
    with database.connection_context():
        endpoints = due_endpoints(clock())
    if not endpoints:
        return 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=config.threads) as pool:
        return sum(pool.map(lambda due: _deliver_in_thread(due[0], clock, config), endpoints))


def _deliver_in_thread(endpoint_seq: int, clock: Clock, config: DeliveryConfig) -> int:
    with database.connection_context():
        return deliver_endpoint(endpoint_seq, clock, config)


class Dispatcher:
    """Delivers the outbox in the background: every `poll_seconds` it hands each endpoint
    with a due event to a pool of `threads`, unless one of its threads is sending to that
    endpoint already, or a quarter of them to that account's endpoints. An endpoint that
    is slow or down keeps one thread busy, and one account's endpoints a quarter of them
    at most: the endpoints of other accounts are not kept waiting. Several workers may run
    one each; an event's claim keeps them from sending it twice at once."""

    def __init__(self, clock: Clock, config: DeliveryConfig):
        self.clock = clock
        self.config = config
        self._stop = threading.Event()
        self._busy: set[int] = set()
        self._per_account: dict[str, int] = {}  # threads busy with each account's endpoints
        self._account_share = max(1, config.threads // 4)
        self._lock = threading.Lock()
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=config.threads, thread_name_prefix="webhooks"
        )
        self._thread = threading.Thread(target=self._loop, name="webhooks", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop looking, and wait for the attempts under way (each ends within its
        timeout): what they did is recorded."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # the database away a moment: the next tick tries again
                log.warning("webhook delivery could not read the outbox", exc_info=True)
            self._stop.wait(self.config.poll_seconds)

    def tick(self) -> None:
        with self._lock:
            busy = set(self._busy)
        with database.connection_context():
            due = due_endpoints(self.clock(), skip=busy)
        for endpoint, api_key in due:
            with self._lock:
                # An account's endpoints take at most a quarter of the threads: slow ones
                # of one tenant leave the rest to the others.
                if self._per_account.get(api_key, 0) >= self._account_share:
                    continue
                self._busy.add(endpoint)
                self._per_account[api_key] = self._per_account.get(api_key, 0) + 1
            self._pool.submit(self._deliver, endpoint, api_key)

    def _deliver(self, endpoint: int, api_key: str) -> None:
        try:
            _deliver_in_thread(endpoint, self.clock, self.config)
        except Exception:  # nothing is lost: the event stays pending, claimed a while
            log.warning("webhook delivery failed", exc_info=True)
        finally:
            with self._lock:
                self._busy.discard(endpoint)
                self._per_account[api_key] -= 1
