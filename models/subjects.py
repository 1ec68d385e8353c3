"""Finding records by phone number without keeping numbers in an index.

A record's numbers are indexed as a keyed hash (HMAC-SHA256, truncated to 128 bits) of
the normalised number. Without the key, the hashes cannot be tested against the small
space of phone numbers; the key lives outside the database (REDACT_SUBJECT_KEY, or a key
file beside an SQLite database). A record's hashes are cleared when it is redacted, so
after a subject's records are erased nothing in the store leads back to the number.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from .keyfile import read_or_create

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


def key_file(database_path: str) -> str:
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
