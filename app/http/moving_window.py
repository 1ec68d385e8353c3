"""The rate limits' storage within one process (`RATELIMIT_STORAGE_URI=memory://`): the
moving window of `limits`, kept without a thread of its own.

`limits`' own memory storage drops expired entries on a timer thread that it starts
anew every 10 ms while requests come, and `Thread.start` waits until the new thread runs.
On the event loop that serves every request of a worker that cost ~7% of the loop's time
under load, and whenever the cores were busy (a job running in the same process) a wait
for the scheduler before the request could go on: up to ~160 ms was measured in one start.

This storage is an extension of `limits` (its `Storage` base class, for custom backends)
that does the same bookkeeping inline: a key keeps at most `limit` timestamps (a moving
window never looks further back), expired ones are dropped when the key is next used, and
keys that have been idle for a whole window are swept at most once a second, so an
address that failed once does not stay in memory.
"""

from __future__ import annotations

import collections
import threading
import time

from limits.storage import MovingWindowSupport, Storage

SWEEP_SECONDS = 1.0


class LocalMovingWindow(Storage, MovingWindowSupport):
    """Moving-window storage in this process's memory (the strategy's two operations and
    `clear`; the counters of the other strategies are not kept)."""

    STORAGE_SCHEME = None  # built directly by app/http/ratelimit.py, not from a URI

    def __init__(self) -> None:
        super().__init__()
        self._events: dict[str, collections.deque[float]] = {}
        self._expiry: dict[str, float] = {}  # a key's window, for the sweep
        self._lock = threading.Lock()  # one event loop uses it; the lock costs little
        self._swept = time.time()

    def __len__(self) -> int:
        """How many keys it keeps (those used within their window, and until the next
        sweep those that were not)."""
        return len(self._events)

    @property
    def base_exceptions(self) -> type[Exception]:
        return ValueError

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        if amount > limit:
            return False
        now = time.time()
        with self._lock:
            self._sweep(now)
            events = self._window(key, limit, expiry, now)
            if len(events) + amount > limit:
                return False
            events.extend([now] * amount)
            return True

    def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        now = time.time()
        with self._lock:
            events = self._events.get(key)
            if events is not None:
                _drop_expired(events, now - expiry)
            if not events:
                return now, 0
            return events[0], len(events)

    def _window(self, key: str, limit: int, expiry: int, now: float) -> collections.deque:
        events = self._events.get(key)
        if events is None or events.maxlen != limit:
            events = self._events[key] = collections.deque(events or (), maxlen=limit)
        self._expiry[key] = expiry
        _drop_expired(events, now - expiry)
        return events

    def _sweep(self, now: float) -> None:
        if now - self._swept < SWEEP_SECONDS:
            return
        self._swept = now
        idle = [
            key
            for key, events in self._events.items()
            if not events or events[-1] <= now - self._expiry[key]
        ]
        for key in idle:
            del self._events[key], self._expiry[key]

    def clear(self, key: str) -> None:
        with self._lock:
            self._events.pop(key, None)
            self._expiry.pop(key, None)

    def reset(self) -> int:
        with self._lock:
            cleared = len(self._events)
            self._events.clear()
            self._expiry.clear()
            return cleared

    def check(self) -> bool:
        return True

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        raise NotImplementedError("this storage keeps moving windows only")

    def get(self, key: str) -> int:
        raise NotImplementedError("this storage keeps moving windows only")

    def get_expiry(self, key: str) -> float:
        raise NotImplementedError("this storage keeps moving windows only")


def _drop_expired(events: collections.deque, since: float) -> None:
    """Drop the timestamps at or before `since` (the oldest are on the left)."""
    while events and events[0] <= since:
        events.popleft()
