"""The HTTP server's settings beyond uvicorn's, for `redact serve` (the Procfile's web
line): a guard against slow clients, a cap on malloc arenas, and a settled heap.

uvicorn closes a keep-alive connection left idle, but sets no deadline for a request
itself: a client that sends its headers or body a byte at a time (slowloris) holds its
connection, and its place among the requests in flight, for as long as it likes. Here a
request must arrive whole (headers and body) within `read_timeout` seconds of the
connection opening or of the previous response. A client that is slower gets a 408
problem if no request of it is under way yet, or is disconnected if its body is late (the
request then ends unanswered, as the client has gone). A request already received is never
cut short, however long the service takes over it. Requests the HTTP parser refuses get a
problem body too, instead of uvicorn's plain text.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import gc
import json
import os
import uuid
from collections.abc import Callable

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.settings import ConfigError, Settings

PROTOCOL = "app.server:GuardedHttpToolsProtocol"
"""For uvicorn's `http` option (a name, so that uvicorn's worker processes import it)."""


@functools.cache
def _read_timeout() -> float:
    """REDACT_READ_TIMEOUT, read once per process."""
    try:
        return Settings.from_env().read_timeout
    except ConfigError:  # the app reports it in one line as it starts, and stops
        return Settings.read_timeout


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    on_connection_lost: Callable[[], None] | None = None
    """Called once the connection has closed (app/workers.py counts a worker's)."""

    @property
    def read_timeout(self) -> float:
        return _read_timeout()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._read_deadline: asyncio.TimerHandle | None = None
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)
        if self.on_connection_lost is not None:
            self.on_connection_lost()

    def on_message_complete(self) -> None:
        self._disarm()  # the request is in: from here on it is the service's time
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()

    def _arm(self) -> None:
        self._disarm()
        self._read_deadline = self.loop.call_later(self.read_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _too_slow(self) -> None:
        self._read_deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            self._send_problem(
                408,
                "Request Timeout",
                f"The request did not arrive within {self.read_timeout:g} seconds",
            )
        elif cycle.more_body:
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """A request the HTTP parser refuses (a malformed line or header, a header with a
        control character, conflicting lengths) gets a problem body too."""
        self._send_problem(400, "Bad Request", msg)

    def _send_problem(self, status: int, title: str, detail: str) -> None:
        body = json.dumps(
            {"type": "about:blank", "title": title, "detail": detail, "instance": uuid.uuid4().hex}
        ).encode()
        self.transport.write(
            f"HTTP/1.1 {status} {title}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
            + body
        )
        self.transport.close()


M_ARENA_MAX = -8  # glibc's malloc.h


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's malloc arenas for the threads created from now on, unless
    MALLOC_ARENA_MAX says otherwise. With the default (8 per core), each thread comes to
    allocate in an arena of its own, and the memory freed there stays with it: when the
    service ran 32 request threads per worker, a worker's resident size grew from ~135 to
    ~265 MB in three minutes under load (bench/load.py) and stayed flat at ~136 MB with
    two arenas. A worker now runs a few threads (the group commit's writer, credential
    checks, Starlette's pool for the jobs API); the cap keeps that bound."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return
    with contextlib.suppress(AttributeError, OSError):  # not glibc: nothing to do
        ctypes.CDLL(None).mallopt(M_ARENA_MAX, arenas)


def settle_heap() -> None:
    """Collect once, then exempt every object alive now (the app, its specs and
    validators, the modules) from the collector's later passes (`gc.freeze`). Called
    once a process has built what it serves, before it takes work.

    A full pass of CPython's collector scans every tracked object holding the
    interpreter's lock, so every thread of the process waits for it, the event loop
    included: a served app starts with ~100,000 objects (a full pass ~14 ms here), and a
    process with 250,000 paused 77-97 ms a pass (tests/test_tree_head_latency.py). Frozen,
    a pass scans only what came after; the frozen objects stay for the process's life,
    as they would anyway."""
    gc.collect()
    gc.freeze()
