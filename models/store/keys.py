"""The store's secrets: the key of the phone-number index and the signing key, and the
files an SQLite store keeps them in when they are not given in the environment.

Finding records by phone number without keeping numbers in an index: a record's numbers
are indexed as a keyed hash (HMAC-SHA256, truncated to 128 bits) of the normalised
number. Without the key, the hashes cannot be tested against the small space of phone
numbers; the key lives outside the database (REDACT_SUBJECT_KEY, or a key file beside an
SQLite database). A record's hashes are cleared when it is redacted, so after a subject's
records are erased nothing in the store leads back to the number.

The signing key is Ed25519, used through joserfc (models/proof/signing.py): from
REDACT_SIGNING_KEY (a private JWK or PEM), or `<database>.signing-key` beside an SQLite
store. Its id is its RFC 7638 thumbprint.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Callable

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import OKPKey

ALGORITHM = "Ed25519"


def canonical(document: dict) -> str:
    """The canonical JSON text of a document of strings, integers, booleans, lists and
    objects: keys sorted, no whitespace, and every character outside ASCII escaped
    (\\uXXXX), so that any string a client sent, a lone surrogate included, has bytes
    to hash."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


def read_or_create(path: str, make: Callable[[], str]) -> str:
    """The text kept in `path`, written first from `make()` (readable by the owner only)
    if the file is missing. Written whole under a temporary name, then linked: a
    concurrent reader sees no file or the whole secret, and of two creators the first
    link wins (both then read the winner's)."""
    if not os.path.exists(path):
        temporary = f"{path}.{os.getpid()}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(make() + "\n")
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(temporary)
    with open(path, encoding="ascii") as stored:
        return stored.read().strip()


_SEPARATORS = re.compile(r"[\s().\-/]")
_DIGITS = re.compile(r"^[0-9]{7,15}$")


def normalise_number(value: str | None) -> str | None:
    """The international digits of a phone number (`+44 7700-900123`, `0044...` and
    `447700900123` are one number), or None when `value` is not one (e.g. an alphanumeric
    sender id)."""
    if not value:
        return None
    digits = _SEPARATORS.sub("", value)
    if digits.startswith("+"):
        digits = digits[1:]
    elif digits.startswith("00") and len(digits) >= 9:  # the international prefix
        digits = digits[2:]
    return digits if _DIGITS.match(digits) else None


def subject_key_file(database_path: str) -> str:
    """Where an SQLite store without REDACT_SUBJECT_KEY keeps its key: beside it."""
    return f"{database_path}.key"


class SubjectKey:
    """The secret the subject hashes are keyed with."""

    def __init__(self, secret: bytes):
        if len(secret) < 16:
            raise ValueError("the subject key must be at least 16 bytes")
        self._keyed = hmac.new(secret, digestmod=hashlib.sha256)  # copied per digest: cheaper

    def hash(self, value: str | None) -> str | None:
        """The index value for a number as stored on a record, or None if not a number."""
        number = normalise_number(value)
        if number is None:
            return None
        return self.digest(number.encode())[:32]

    def digest(self, data: bytes) -> str:
        """HMAC-SHA256 of `data` under this key, in hex."""
        mac = self._keyed.copy()
        mac.update(data)
        return mac.hexdigest()

    @classmethod
    def from_file(cls, path: str) -> SubjectKey:
        """The key kept in `path`, created (readable by the owner only) if missing."""
        return cls(bytes.fromhex(read_or_create(path, lambda: secrets.token_hex(32))))


def signing_key_file(database_path: str) -> str:
    """Where an SQLite store without REDACT_SIGNING_KEY keeps its signing key."""
    return f"{database_path}.signing-key"


class SigningKey:
    """An Ed25519 private key and its id."""

    def __init__(self, key: OKPKey):
        if key.as_dict(private=False).get("crv") != "Ed25519" or not key.is_private:
            raise ValueError("the signing key must be an Ed25519 private key")
        self.key = key
        self.kid = key.thumbprint()

    @classmethod
    def parse(cls, text: str) -> SigningKey:
        """A key given as a private JWK (JSON) or PEM; ValueError if it is neither."""
        text = text.strip()
        try:
            data: str | dict = json.loads(text) if text.startswith("{") else text
            key = OKPKey.import_key(data)
        except (ValueError, JoseError, TypeError) as exc:
            raise ValueError(
                "the signing key must be an Ed25519 private key as a JWK or PEM"
            ) from exc
        return cls(key)

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(OKPKey.generate_key("Ed25519"))

    def export(self) -> str:
        """The private key as a JWK, for REDACT_SIGNING_KEY or the key file."""
        return json.dumps(self.key.as_dict(private=True), sort_keys=True)

    @classmethod
    def from_file(cls, path: str) -> SigningKey:
        """The key kept in `path`, created (readable by the owner only) if missing."""
        return cls.parse(read_or_create(path, lambda: cls.generate().export()))

    def public_jwk(self) -> dict:
        return {**self.key.as_dict(private=False), "kid": self.kid, "alg": ALGORITHM}

    def sign(self, document: dict, typ: str) -> str:
        """`document` (canonical JSON) as a compact JWS under this key."""
        header = {"alg": ALGORITHM, "kid": self.kid, "typ": typ}
        return jws.serialize_compact(
            header, canonical(document).encode(), self.key, algorithms=[ALGORITHM]
        )
