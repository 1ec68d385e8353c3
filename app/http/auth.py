"""Basic authentication for the spec's `basicAuth` scheme: who the caller is, recorded in
the request state (app/http/state.py) for the account gate (app/http/gate.py), which
applies the account's rate limit and admission next. Runs in Connexion's security
middleware, on the event loop, once per request, so the common case costs a dictionary
lookup: a verified (key, secret) pair is cached for REDACT_CREDENTIAL_CACHE_SECONDS; only
a miss runs the slow hash check, in a thread.

A hash check costs ~30 ms of CPU and 16 MB of memory (scrypt), so concurrent misses for
the same credentials share one check, and at most HASH_CHECKS_AT_ONCE run per process:
a burst of new clients (or of guesses) cannot exhaust the worker's memory. Failed
checks are throttled per client address (app/http/ratelimit.py).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import concurrent.futures
import functools
import hashlib

import cachetools
from connexion.security import NO_VALUE, BasicSecurityHandler

from app.http.admission import Overloaded
from app.http.problems import RateLimitHit, Unauthorized
from app.http.ratelimit import RateLimits
from app.http.state import request_state
from app.metrics import AUTH_FAILURES
from models import Account, database

HASH_CHECKS_AT_ONCE = 2
CHECKS_WAITING_PER_ADDRESS = 16
"""Distinct credentials one client address may have waiting for a hash check; beyond,
429 at once. Failures count only once checked, so without this one address could queue
thousands of guesses ahead of everyone's new credentials; high enough that the clients of
one proxy, meeting a freshly started worker, are checked and not refused."""
CHECKS_WAITING = 256
"""Distinct credentials waiting for a hash check in a process, from all addresses;
beyond, the request is shed (503) rather than queued for seconds."""


class Authenticator:
    def __init__(self, rate_limits: RateLimits, cache_seconds: int, clock):
        self.clock = clock
        self.rate_limits = rate_limits
        # Created on first use, in the worker process (a pool's threads do not survive a
        # fork).
        self._hash_pool: concurrent.futures.ThreadPoolExecutor | None = None
        self.cache: cachetools.TTLCache[tuple, object] = cachetools.TTLCache(
            maxsize=10_000, ttl=cache_seconds or 1e-9
        )
        self._checking: dict[tuple, asyncio.Future] = {}
        self._waiting_by_address: collections.Counter[str] = collections.Counter()

    def cached(self, username: str, password: str) -> dict | None:
        """The token info of credentials verified within the cache's lifetime, None if
        these were not (the front path, app/http/front.py, then leaves the request to
        Connexion's security, which calls this authenticator)."""
        products = self.cache.get(_cache_key(username, password))
        return None if products is None else {"sub": username, "products": products}

    async def __call__(self, username: str, password: str, request) -> dict:
        """Connexion basic-info function: the token info of valid credentials."""
        key = _cache_key(username, password)
        products = self.cache.get(key)
        if products is None:
            address = request.client.host if request.client else "unknown"
            wait = await self.rate_limits.address_blocked(address)
            if wait:
                AUTH_FAILURES.labels("throttled").inc()
                raise RateLimitHit(wait)
            check = self._checking.get(key)
            if check is None:
                if self._waiting_by_address[address] >= CHECKS_WAITING_PER_ADDRESS:
                    AUTH_FAILURES.labels("throttled").inc()
                    raise RateLimitHit(1)
                if len(self._checking) >= CHECKS_WAITING:
                    request_state(request.scope).shed = True
                    raise Overloaded()
                if self._hash_pool is None:
                    self._hash_pool = concurrent.futures.ThreadPoolExecutor(
                        HASH_CHECKS_AT_ONCE, thread_name_prefix="hash-check"
                    )
                check = asyncio.get_running_loop().run_in_executor(
                    self._hash_pool, _authenticate, username, password, self.clock()
                )
                self._checking[key] = check
                self._waiting_by_address[address] += 1
                check.add_done_callback(functools.partial(self._checked, key, address))
            account = await asyncio.shield(check)
            if account is None:
                await self.rate_limits.record_auth_failure(address)
                raise Unauthorized()
            products = account.product_set
            self.cache[key] = products

        request_state(request.scope).api_key = username
        return {"sub": username, "products": products}

    def close(self) -> None:
        """Stop the hash-check threads (started again by the next check)."""
        pool, self._hash_pool = self._hash_pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def _checked(self, key: tuple, address: str, _) -> None:
        self._checking.pop(key, None)
        self._waiting_by_address[address] -= 1
        if self._waiting_by_address[address] <= 0:
            del self._waiting_by_address[address]


def basic_security_handler(authenticator: Authenticator) -> type[BasicSecurityHandler]:
    """A Connexion security handler class bound to `authenticator` (Connexion instantiates
    handler classes itself, so the binding is a subclass).

    Connexion's own wrapper inspects the info function's signature on every request; this
    one parses the header and awaits the authenticator directly.
    """

    class BoundBasicSecurityHandler(BasicSecurityHandler):
        def get_fn(self, security_scheme, required_scopes):
            async def verify(request):
                auth_type, user_pass = self.get_auth_header_value(request)
                if auth_type != "basic":
                    return NO_VALUE
                try:
                    username, password = (
                        base64.b64decode(user_pass, validate=True).decode("latin1").split(":", 1)
                    )
                except (ValueError, UnicodeError):
                    raise Unauthorized() from None
                return await authenticator(username, password, request)

            return verify

    return BoundBasicSecurityHandler


def _cache_key(username: str, password: str) -> tuple[str, bytes]:
    return (username, hashlib.sha256(password.encode("utf-8", "surrogatepass")).digest())


def basic_credentials(value: str) -> tuple[str, str] | None:
    """(username, password) of an `Authorization: Basic ...` value; None if it is not
    one; Unauthorized if its credentials cannot be read."""
    auth_type, _, user_pass = value.strip().partition(" ")
    if auth_type.lower() != "basic":
        return None
    try:
        username, password = (
            base64.b64decode(user_pass.strip(), validate=True).decode("latin1").split(":", 1)
        )
    except (ValueError, UnicodeError):
        raise Unauthorized() from None
    return username, password


def _authenticate(api_key: str, api_secret: str, now) -> Account | None:
    with database.connection_context():
        return Account.authenticate(api_key, api_secret, now)
