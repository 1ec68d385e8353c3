"""Delivering webhooks' outbox (models/webhooks/outbox.py). The job worker (and `redact
serve`) delivers it (`Dispatcher`, `deliver_due`): signed as Standard Webhooks specify, at
least once, each attempt recorded; a failed attempt is retried with exponential backoff
until the event is `give_up_seconds` old. An endpoint gets its events strictly in the
order they were written (only its oldest undelivered event is ever sent), which keeps a
job's events in order.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import logging
import threading
from collections.abc import Iterable
from typing import Any

import peewee

from models.store.base import Clock, database, utcnow
from models.webhooks.rows import WebhookAttempt, WebhookEndpoint, WebhookEvent
from models.webhooks.sending import Outcome, post

logger = logging.getLogger("redact.webhooks.delivery")


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


def due_endpoints(now: datetime.datetime, skip: Iterable[int] = ()) -> list[tuple[int, str]]:
    """Endpoints (seq, account) whose oldest pending event is due by `now`: those whose
    event was never tried first, so that endpoints that keep failing queue behind them."""
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
        .order_by(WebhookEvent.attempts, WebhookEvent.seq)  # endpoints that failed go last
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
            endpoint, event, timeout=config.timeout_seconds, allow_private=config.allow_private
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
        logger.warning(
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
                logger.warning("webhook delivery could not read the outbox", exc_info=True)
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
            logger.warning("webhook delivery failed", exc_info=True)
        finally:
            with self._lock:
                self._busy.discard(endpoint)
                self._per_account[api_key] -= 1
