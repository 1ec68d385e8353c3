"""Sending one webhook event: a POST signed as Standard Webhooks specify, and its outcome
(status code, or why there was none).

A receiver is a URL a tenant chose, so an attempt is built not to be turned against the
service (models/webhooks/pinning.py): the host is resolved once, refused if any address it
resolves to is not public (unless those are allowed), and the connection goes to an
address that was checked, never to a second lookup's answer; TLS is still verified against
the host name. One deadline bounds the whole attempt (connect, TLS, sending, the answer's
headers and body), not each socket operation; a redirect is an answer like any other (a
failed attempt, never followed); at most `MAX_ANSWER_BYTES` of the answer are read.
"""

from __future__ import annotations

import dataclasses
import datetime
import ssl
import time
import urllib.parse

import httpcore
import standardwebhooks

from models.webhooks.pinning import PinnedBackend, Refused, resolve
from models.webhooks.rows import WebhookEndpoint, WebhookEvent

MAX_ANSWER_BYTES = 65536
"""What is read of a receiver's answer (it is not kept): a receiver cannot make an
attempt read more."""

_TLS = ssl.create_default_context()


@dataclasses.dataclass
class Outcome:
    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def post(
    endpoint: WebhookEndpoint,
    event: WebhookEvent,
    *,
    timeout: float,
    allow_private: bool = False,
) -> Outcome:
    """POST the event's payload to the endpoint's URL, signed with its secret (Standard
    Webhooks headers, the event's id as `webhook-id`), to an address of its host that was
    checked (`resolve`), all of it within `timeout` seconds. The timestamp is the wall
    clock's: receivers reject a signature more than minutes off."""
    started = time.monotonic()
    deadline = started + timeout
    parts = urllib.parse.urlsplit(endpoint.url)
    try:
        addresses = resolve(parts.hostname or "", _port(parts), allow_private=allow_private)
    except Refused as exc:
        return Outcome(None, str(exc), _since(started))
    sent_at = datetime.datetime.now(datetime.UTC)
    headers = {
        "content-type": "application/json",
        "user-agent": "redact-webhooks/1",
        "webhook-id": event.id,
        "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": standardwebhooks.Webhook(endpoint.secret).sign(
            event.id, sent_at, event.payload
        ),
    }
    status: int | None = None
    error: str | None = None
    try:
        backend = PinnedBackend(addresses, deadline, timeout)
        status = _send(endpoint.url, headers, event.payload.encode(), backend)
    except Exception as exc:  # any failure to deliver is an attempt that failed
        error = f"{type(exc).__name__}: {exc or 'no answer'}"[:200]
    return Outcome(status, error, _since(started))


def _send(url: str, headers: dict[str, str], body: bytes, backend: PinnedBackend) -> int:
    """The status of the answer to one POST over `backend`'s connection; at most
    MAX_ANSWER_BYTES of the answer's body are read (and dropped)."""
    limit = backend.timeout
    limits = {"connect": limit, "read": limit, "write": limit, "pool": limit}
    with (
        httpcore.ConnectionPool(
            ssl_context=_TLS,
            max_connections=1,
            max_keepalive_connections=0,
            network_backend=backend,
        ) as pool,
        pool.stream(
            "POST", url, headers=list(headers.items()), content=body, extensions={"timeout": limits}
        ) as answer,
    ):
        read = 0
        for chunk in answer.iter_stream():
            read += len(chunk)
            if read >= MAX_ANSWER_BYTES:
                break
        return answer.status


def _port(parts: urllib.parse.SplitResult) -> int:
    return parts.port or (443 if parts.scheme == "https" else 80)


def _since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
