"""Sending one webhook event: a POST signed as Standard Webhooks specify, refused for a
host at a non-public address unless those are allowed, and its outcome (status code, or
why there was none).
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import socket
import time
import urllib.error
import urllib.parse
import urllib.request

import standardwebhooks

from models.webhooks.rows import WebhookEndpoint, WebhookEvent


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
    endpoint: WebhookEndpoint,
    event: WebhookEvent,
    *,
    timeout: float,
    allow_private: bool = False,
) -> Outcome:
    """POST the event's payload to the endpoint's URL, signed with its secret (Standard
    Webhooks headers, the event's id as `webhook-id`), unless its host is a non-public
    address and those are not allowed (`refused_address`). The timestamp is the wall
    clock's: receivers reject a signature more than minutes off."""
    url, secret, event_id, body = endpoint.url, endpoint.secret, event.id, event.payload
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
