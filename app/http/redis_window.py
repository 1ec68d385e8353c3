"""The account limit's moving window in Redis: counted and read in one round trip, for
every request the event loop has at hand.

`limits` answers the account gate in two round trips a request: its moving window's `hit`
(one script) and then `get_window_stats` for the `RateLimit` headers (another). This
script does both on the same list, in the same layout `limits` keeps (key `LIMITS:<item
key>`, the newest timestamp first, at most `limit` kept, expiring after the window), so
the two read and count the same window.

And it does so for a batch: the requests that reach the gate in the same turn of the
event loop wait for one script call that counts each in turn, in the order they came.
Under load a call through redis-py's asyncio client cost a worker more of its event loop
than anything else it did for a redaction on PostgreSQL (28% of its samples holding the
interpreter's lock; bench/README.md, "The rate limiter"); a batch pays it once. Alone, a
request is a batch of one, sent at the next turn of the loop. Redis runs a script alone,
so each count, and the window it reports, is exact as one request's was.
"""

from __future__ import annotations

import asyncio
import time

import redis.asyncio
from limits import RateLimitItem

KEY_PREFIX = "LIMITS"  # the prefix `limits`' Redis storage gives its keys

HIT_AND_WINDOW = """
local now = tonumber(ARGV[1])
local answers = {}
for i, key in ipairs(KEYS) do
    local limit, expiry = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
    local allowed = 0
    local last = redis.call('lindex', key, limit - 1)
    if not (last and tonumber(last) >= now - expiry) then
        redis.call('lpush', key, ARGV[1])
        redis.call('ltrim', key, 0, limit - 1)
        redis.call('expire', key, expiry)
        allowed = 1
    end
    -- The oldest entry still in the window (newest first: a binary search, as limits does).
    local low, high, oldest = 0, redis.call('llen', key) - 1, -1
    while low <= high do
        local middle = math.floor((low + high) / 2)
        if tonumber(redis.call('lindex', key, middle)) >= now - expiry then
            oldest, low = middle, middle + 1
        else
            high = middle - 1
        end
    end
    answers[#answers + 1] = allowed
    if oldest < 0 then
        answers[#answers + 1] = 0
        answers[#answers + 1] = ARGV[1]
    else
        answers[#answers + 1] = oldest + 1
        answers[#answers + 1] = redis.call('lindex', key, oldest)
    end
end
return answers
"""


class RedisMovingWindow:
    """`hit` and window of a moving-window limit, in one script call for each batch of
    requests (one event loop's: an asyncio client belongs to its loop)."""

    def __init__(self, client: redis.asyncio.Redis):
        self.script = client.register_script(HIT_AND_WINDOW)
        self._waiting: list[tuple[asyncio.Future, str, RateLimitItem]] = []
        self._sending: set[asyncio.Task] = set()  # referenced until done

    async def hit(self, item: RateLimitItem, *identifiers: str) -> tuple[bool, float, int]:
        """Count one request against `item` for `identifiers` if the window has room:
        whether it was counted, when the window next has room (epoch seconds), and how
        many requests it has room for now."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self._waiting:  # the first of a batch: sent once the loop has taken the rest
            loop.call_soon(self._send)
        self._waiting.append((future, f"{KEY_PREFIX}:{item.key_for(*identifiers)}", item))
        allowed, count, oldest, now = await future
        start = float(oldest) if count else now
        return bool(allowed), start + item.get_expiry(), item.amount - int(count)

    def _send(self) -> None:
        batch, self._waiting = self._waiting, []
        task = asyncio.ensure_future(self._count(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _count(self, batch: list[tuple[asyncio.Future, str, RateLimitItem]]) -> None:
        now = time.time()
        args: list = [repr(now)]
        for _, _, item in batch:
            args += (item.amount, item.get_expiry())
        try:
            answers = await self.script(keys=[key for _, key, _ in batch], args=args)
        except asyncio.CancelledError:
            for future, _, _ in batch:
                future.cancel()
            raise
        except Exception as exc:  # each request meets the failure as its own call would
            for future, _, _ in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for n, (future, _, _) in enumerate(batch):
            if not future.done():  # its request may have gone (it was counted all the same)
                future.set_result((*answers[3 * n : 3 * n + 3], now))
