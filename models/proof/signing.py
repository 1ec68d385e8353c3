"""The service's signing key: Ed25519, used through joserfc for every signed document
(tree heads, receipts) as a compact JWS.

The key comes from REDACT_SIGNING_KEY (a private JWK or PEM, the same in every process of
a scale-out), or, for an SQLite store without it, from `<database>.signing-key` beside the
database, created on first use as the subject key is. Its id is its RFC 7638 thumbprint.
Every key that has signed is kept, public half only, in `signing_key`, so a rotated key
stays listed for verification (GET /v1/redact/keys).

The algorithm is named `Ed25519` in the JWS header: RFC 9864's fully specified name for
EdDSA over Ed25519 (joserfc deprecates the polymorphic `EdDSA`). Verifiers pass
`algorithms=["Ed25519"]`.
"""

from __future__ import annotations

import datetime
import json

import peewee
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from models.store.base import BaseModel, UTCDateTimeField
from models.store.keys import ALGORITHM, SigningKey


class PublishedKey(BaseModel):
    """A key that has signed, public half only: listed for verification for good."""

    kid = peewee.CharField(max_length=64, primary_key=True)
    jwk = peewee.TextField()
    first_used = UTCDateTimeField()

    class Meta:
        table_name = "signing_key"


def publish(key: SigningKey, now: datetime.datetime) -> None:
    """Record that `key` signs from now on (once per key)."""
    PublishedKey.insert(
        kid=key.kid, jwk=json.dumps(key.public_jwk()), first_used=now
    ).on_conflict_ignore().execute()


def published_keys() -> list[dict]:
    """Every key that has signed, oldest first, as JWKs (with `kid` and `alg`)."""
    return [json.loads(row.jwk) for row in PublishedKey.select().order_by(PublishedKey.first_used)]


def listed_keys(current: SigningKey | None) -> list[dict]:
    """The keys to verify with: every key that has signed, and the current one."""
    keys = published_keys()
    if current is not None and current.kid not in {k["kid"] for k in keys}:
        keys.append(current.public_jwk())
    return keys


def key_set(keys: list[dict]) -> KeySet:
    """A joserfc key set of public JWKs (from GET /v1/redact/keys or a file)."""
    return KeySet.import_key_set({"keys": keys})


def verify(token: str, keys: KeySet) -> tuple[dict, dict]:
    """(header, document) of a compact JWS signed by one of `keys`; ValueError if the
    signature does not verify or the token is not one."""
    try:
        signed = jws.deserialize_compact(token, keys, algorithms=[ALGORITHM])
        return dict(signed.protected), json.loads(signed.payload)
    except (JoseError, ValueError, TypeError) as exc:
        raise ValueError(f"the signature does not verify ({exc})") from None
