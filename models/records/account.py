"""Accounts: an API key, a secret kept only as a salted hash, the products it may redact."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import secrets

import peewee

from models.records.products import PRODUCTS
from models.store.base import BaseModel, UTCDateTimeField, utcnow

# scrypt parameters: about 30 ms per check, so guessing is slow and a verified credential
# is worth caching (app/http/auth.py) rather than re-checking per request.
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def hash_secret(secret: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, dklen=32, **_SCRYPT)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${salt.hex()}${digest.hex()}"


def check_secret(secret: str, stored: str) -> bool:
    """Constant-time comparison of `secret` with a stored hash."""
    try:
        _, n, r, p, salt, digest = stored.split("$")
        candidate = hashlib.scrypt(
            secret.encode(), salt=bytes.fromhex(salt), dklen=32, n=int(n), r=int(r), p=int(p)
        )
    except (ValueError, UnicodeError):
        return False
    return hmac.compare_digest(candidate.hex(), digest)


class Account(BaseModel):
    api_key = peewee.CharField(primary_key=True, max_length=64)
    secret_hash = peewee.CharField(max_length=200)
    products = peewee.CharField(max_length=200)
    created_at = peewee.DateTimeField(default=utcnow)
    # After a rotation, the former secret stays valid until then (no downtime for clients
    # that switch over).
    previous_secret_hash = peewee.CharField(max_length=200, null=True)
    previous_secret_until = UTCDateTimeField(null=True)

    @classmethod
    def register(cls, api_key: str, api_secret: str, products=PRODUCTS) -> Account:
        """Create an account; the secret is stored only as a salted hash."""
        unknown = sorted(set(products) - set(PRODUCTS))
        if unknown:
            raise ValueError(f"unknown product(s): {', '.join(unknown)}")
        if not products:
            raise ValueError("an account needs at least one product")
        return cls.create(
            api_key=api_key,
            secret_hash=hash_secret(api_secret),
            products=",".join(p for p in PRODUCTS if p in products),
        )

    @classmethod
    def authenticate(
        cls, api_key: str, api_secret: str, now: datetime.datetime | None = None
    ) -> Account | None:
        """The account whose key and secret (or former secret, within its grace period)
        these are, or None. Every refusal costs two hash checks, whether the key exists,
        has a former secret or not, so timing reveals neither."""
        now = now or utcnow()
        account = cls.get_or_none(cls.api_key == api_key)
        if account is None:
            check_secret(api_secret, _DUMMY_HASH)
            check_secret(api_secret, _DUMMY_HASH)
            return None
        if check_secret(api_secret, account.secret_hash):
            return account
        in_grace = (
            account.previous_secret_hash is not None
            and account.previous_secret_until is not None
            and now < account.previous_secret_until
        )
        previous = (account.previous_secret_hash if in_grace else None) or _DUMMY_HASH
        return account if check_secret(api_secret, previous) and in_grace else None

    @classmethod
    def rotate_secret(
        cls, api_key: str, new_secret: str, grace: datetime.timedelta, now: datetime.datetime
    ) -> Account | None:
        """Make `new_secret` the account's secret; the current one stays valid for
        `grace`. Returns the account, or None if there is no such key."""
        account = cls.get_or_none(cls.api_key == api_key)
        if account is None:
            return None
        account.previous_secret_hash = account.secret_hash if grace.total_seconds() > 0 else None
        account.previous_secret_until = now + grace if grace.total_seconds() > 0 else None
        account.secret_hash = hash_secret(new_secret)
        account.save()
        return account

    @property
    def product_set(self) -> frozenset[str]:
        return frozenset(self.products.split(","))


_DUMMY_HASH = hash_secret("not a secret", salt=b"\0" * 16)
