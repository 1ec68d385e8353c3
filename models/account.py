"""Accounts: an API key, a secret kept only as a salted hash, the products it may redact."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import secrets

import peewee

from .db import BaseModel
from .policy import PRODUCTS

# scrypt parameters: about 30 ms per check, so guessing is slow and a verified credential
# is worth caching (app/auth.py) rather than re-checking per request.
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
    created_at = peewee.DateTimeField(default=lambda: datetime.datetime.now(datetime.UTC))

    @classmethod
    def register(cls, api_key: str, api_secret: str, products=PRODUCTS) -> "Account":
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
    def authenticate(cls, api_key: str, api_secret: str) -> "Account | None":
        """The account whose key and secret these are, or None."""
        account = cls.get_or_none(cls.api_key == api_key)
        if account is None:
            # Spend the same time as a real check so timing does not reveal valid keys.
            check_secret(api_secret, _DUMMY_HASH)
            return None
        return account if check_secret(api_secret, account.secret_hash) else None

    @property
    def product_set(self) -> frozenset[str]:
        return frozenset(self.products.split(","))


_DUMMY_HASH = hash_secret("not a secret", salt=b"\0" * 16)
