"""Rate-limiting policy, stated once, over the `limits` library.

- Each API key may make `REDACT_RATE_LIMIT` requests (default 170/second) in any span of
  that length: the moving-window strategy, exact also at window boundaries (a fixed window
  admits up to twice the limit across one).
- Each client address may fail authentication `REDACT_AUTH_FAILURE_LIMIT` times (default
  20/minute); beyond that its requests get 429 before any credential check.
- Storage is `RATELIMIT_STORAGE_URI`: memory (one process; app/http/moving_window.py,
  which keeps the window without a thread) or Redis (shared by workers).
  Redis is used through its asyncio client, so a round trip does not block the event
  loop that serves every request of the worker, and an account's request is counted and
  its window read in one round trip (app/http/redis_window.py).
- If the storage is unreachable the limiter fails open: requests are admitted and each
  failure is logged, because refusing all erasures while Redis restarts helps nobody.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import time
import weakref
from dataclasses import dataclass
from typing import Any, NamedTuple

import limits
import limits.aio.strategies
import redis
import redis.asyncio
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from app.http.moving_window import LocalMovingWindow
from app.http.redis_window import RedisMovingWindow
from app.metrics import LIMITER_UNAVAILABLE

logger = logging.getLogger("redact.http.ratelimit")


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int
    window_seconds: int

    def headers(self) -> dict[str, str]:
        """IETF RateLimit / RateLimit-Policy headers (draft-ietf-httpapi-ratelimit-headers)."""
        return {
            "RateLimit-Policy": f'"account";q={self.limit};w={self.window_seconds}',
            "RateLimit": f'"account";r={self.remaining};t={self.reset_seconds}',
        }


class _RedisClients(NamedTuple):
    """One event loop's way to Redis: `limits`' limiter, the pool it uses (ours, so that
    it can be closed), and the account window's one-trip script on that pool."""

    limiter: limits.aio.strategies.MovingWindowRateLimiter
    pool: redis.asyncio.ConnectionPool
    window: RedisMovingWindow


class RateLimits:
    def __init__(self, storage_uri: str, account_limit: str, auth_failure_limit: str):
        self.storage_uri = storage_uri
        self.account_limit = limits.parse(account_limit)
        self.failure_limit = limits.parse(auth_failure_limit)
        self._memory = (
            MovingWindowRateLimiter(LocalMovingWindow())
            if storage_uri.startswith("memory")
            else None
        )
        self._by_loop: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def _limiter(self):
        """The memory limiter, or this event loop's Redis limiter."""
        return self._memory if self._memory is not None else self._redis().limiter

    def _redis(self) -> _RedisClients:
        """This event loop's Redis limiter, connection pool and one-trip window (an
        asyncio client belongs to the loop it was created on)."""
        loop = asyncio.get_running_loop()
        found = self._by_loop.get(loop)
        if found is None:
            # The pool is ours, so that `aclose` can close its connections (the storage
            # offers no close of its own).
            pool = redis.asyncio.ConnectionPool.from_url(self.storage_uri)
            # `connection_pool` is a documented option of limits' Redis storage, which its
            # annotation of the options does not list.
            options: dict[str, Any] = {"connection_pool": pool}
            storage = storage_from_string(
                f"async+{self.storage_uri}", implementation="redispy", **options
            )
            found = self._by_loop[loop] = _RedisClients(
                limits.aio.strategies.MovingWindowRateLimiter(storage),
                pool,
                RedisMovingWindow(redis.asyncio.Redis(connection_pool=pool)),
            )
        return found

    async def _hit_and_window(self, item, *identifiers: str) -> tuple[bool, float, int]:
        """Count one request if `item`'s window has room: whether it was counted, when
        the window next has room (epoch seconds), how much room it has now; with Redis in
        one round trip (app/http/redis_window.py)."""
        if self._memory is not None:
            allowed = self._memory.hit(item, *identifiers)
            reset, remaining = self._memory.get_window_stats(item, *identifiers)
            return allowed, reset, remaining
        return await self._redis().window.hit(item, *identifiers)

    async def aclose(self) -> None:
        """Close this event loop's connections to the storage (the app's lifespan ends)."""
        found = self._by_loop.pop(asyncio.get_running_loop(), None)
        if found is not None:
            await found.pool.aclose()

    def reachable(self) -> bool:
        """Whether the storage answers (readiness; run in a thread: it blocks). Asked on a
        connection of its own, closed after it: a probe every few seconds costs one
        connect, and leaves no socket open."""
        if self._memory is not None:
            return True
        try:
            with redis.Redis.from_url(
                self.storage_uri, socket_timeout=2, socket_connect_timeout=2
            ) as client:
                return bool(client.ping())
        except Exception:
            return False

    async def _call(self, method: str, *args):
        result = getattr(self._limiter(), method)(*args)
        return await result if inspect.isawaitable(result) else result

    async def _admitting_if_down(self, check, admitted):
        """`await check()`, or `admitted` if the storage cannot answer (the fail-open
        policy of the module docstring)."""
        try:
            return await check()
        except Exception as exc:
            logger.warning("rate-limit storage unavailable, admitting: %s", type(exc).__name__)
            LIMITER_UNAVAILABLE.inc()
            return admitted

    async def hit_account(self, api_key: str) -> Decision:
        """Count one request of `api_key`; the decision carries what the headers report."""
        item = self.account_limit

        async def check() -> Decision:
            allowed, reset, remaining = await self._hit_and_window(item, "account", api_key)
            return Decision(
                allowed,
                item.amount,
                remaining,
                max(0, math.ceil(reset - time.time())),
                item.get_expiry(),
            )

        return await self._admitting_if_down(
            check, Decision(True, item.amount, item.amount, 0, item.get_expiry())
        )

    async def address_blocked(self, address: str) -> int:
        """Seconds until `address` may try credentials again; 0 if it may now."""
        item = self.failure_limit

        async def check() -> int:
            if await self._call("test", item, "auth-failure", address):
                return 0
            reset, _ = await self._call("get_window_stats", item, "auth-failure", address)
            return max(1, math.ceil(reset - time.time()))

        return await self._admitting_if_down(check, 0)

    async def record_auth_failure(self, address: str) -> None:
        await self._admitting_if_down(
            lambda: self._call("hit", self.failure_limit, "auth-failure", address), None
        )
