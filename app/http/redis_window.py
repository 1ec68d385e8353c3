"""The account limit's moving window in Redis, counted and read in one round trip.

`limits` answers the account gate in two: its moving window's `hit` (one script) and then
`get_window_stats` for the `RateLimit` headers (another). On the scale-out path that was
~11% of a worker's event loop under load, two round trips for every request. This script
does both on the same list, in the same layout `limits` keeps (key `LIMITS:<item key>`,
the newest timestamp first, at most `limit` kept, expiring after the window), so the two
read and count the same window. Redis runs a script alone: the count and the window it
reports are one moment's.
"""

from __future__ import annotations

import time

import redis.asyncio
from limits import RateLimitItem

KEY_PREFIX = "LIMITS"  # the prefix `limits`' Redis storage gives its keys

HIT_AND_WINDOW = """
local now, limit, expiry = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local allowed = 0
local last = redis.call('lindex', KEYS[1], limit - 1)
if not (last and tonumber(last) >= now - expiry) then
    redis.call('lpush', KEYS[1], ARGV[1])
    redis.call('ltrim', KEYS[1], 0, limit - 1)
    redis.call('expire', KEYS[1], expiry)
    allowed = 1
end
-- The oldest entry still in the window (newest first: a binary search, as limits does).
local low, high, oldest = 0, redis.call('llen', KEYS[1]) - 1, -1
while low <= high do
    local middle = math.floor((low + high) / 2)
    if tonumber(redis.call('lindex', KEYS[1], middle)) >= now - expiry then
        oldest, low = middle, middle + 1
    else
        high = middle - 1
    end
end
if oldest < 0 then
    return {allowed, 0, ARGV[1]}
end
return {allowed, oldest + 1, redis.call('lindex', KEYS[1], oldest)}
"""


class RedisMovingWindow:
    """`hit` and window of a moving-window limit in one script call."""

    def __init__(self, client: redis.asyncio.Redis):
        self.script = client.register_script(HIT_AND_WINDOW)

    async def hit(self, item: RateLimitItem, *identifiers: str) -> tuple[bool, float, int]:
        """Count one request against `item` for `identifiers` if the window has room:
        whether it was counted, when the window next has room (epoch seconds), and how
        many requests it has room for now."""
        now = time.time()
        key = f"{KEY_PREFIX}:{item.key_for(*identifiers)}"
        allowed, count, oldest = await self.script(
            keys=[key], args=[repr(now), item.amount, item.get_expiry()]
        )
        start = float(oldest) if count else now
        return bool(allowed), start + item.get_expiry(), item.amount - int(count)
