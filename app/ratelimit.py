"""Rate-limiting policy, stated once, over the `limits` library.

- Each API key may make `REDACT_RATE_LIMIT` requests (default 170/second) in any span of
  that length: the moving-window strategy, exact also at window boundaries (a fixed window
  admits up to twice the limit across one).
- Each client address may fail authentication `REDACT_AUTH_FAILURE_LIMIT` times (default
  20/minute); beyond that its requests get 429 before any credential check.
- Storage is `RATELIMIT_STORAGE_URI`: memory (one process) or Redis (shared by workers).
- If the storage is unreachable the limiter fails open: requests are admitted and each
  failure is logged, because refusing all erasures while Redis restarts helps nobody.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import limits
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

log = logging.getLogger("redact.ratelimit")


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


class RateLimits:
    def __init__(self, storage_uri: str, account_limit: str, auth_failure_limit: str):
        self.storage = storage_from_string(storage_uri)
        self.limiter = MovingWindowRateLimiter(self.storage)
        self.account_limit = limits.parse(account_limit)
        self.failure_limit = limits.parse(auth_failure_limit)

    def hit_account(self, api_key: str) -> Decision:
        """Count one request of `api_key`; the decision carries what the headers report."""
        item = self.account_limit
        try:
            allowed = self.limiter.hit(item, "account", api_key)
            reset, remaining = self.limiter.get_window_stats(item, "account", api_key)
        except Exception as exc:  # storage down: fail open (see module docstring)
            log.warning("rate-limit storage unavailable, admitting: %s", type(exc).__name__)
            return Decision(True, item.amount, item.amount, 0, item.get_expiry())
        return Decision(
            allowed, item.amount, remaining, max(0, math.ceil(reset - time.time())),
            item.get_expiry(),
        )

    def address_blocked(self, address: str) -> int:
        """Seconds until `address` may try credentials again; 0 if it may now."""
        try:
            if self.limiter.test(self.failure_limit, "auth-failure", address):
                return 0
            reset, _ = self.limiter.get_window_stats(self.failure_limit, "auth-failure", address)
        except Exception as exc:
            log.warning("rate-limit storage unavailable, admitting: %s", type(exc).__name__)
            return 0
        return max(1, math.ceil(reset - time.time()))

    def record_auth_failure(self, address: str) -> None:
        try:
            self.limiter.hit(self.failure_limit, "auth-failure", address)
        except Exception as exc:
            log.warning("rate-limit storage unavailable: %s", type(exc).__name__)
