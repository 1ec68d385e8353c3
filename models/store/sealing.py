"""Fields sealed with AES-256-GCM under a data key (models/store/keystore.py).

A sealed field is text: base64 of a random 96-bit nonce, the ciphertext and its tag. The
associated data names where the field belongs (account, record, field), so a ciphertext
copied into another row or field does not open.
"""

from __future__ import annotations

import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12


def place(*parts: str) -> bytes:
    """The associated data of a field: its place, parts joined by NUL (no part holds one:
    ids and account keys are checked to be free of it)."""
    return "\x00".join(("redact/v1", *parts)).encode("utf-8", "surrogatepass")


class Sealer:
    """Seals and opens fields under one data key."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes):
        self._aead = AESGCM(key)

    def seal(self, where: bytes, text: str, nonce: bytes | None = None) -> str:
        """`text` sealed at `where`, under a fresh random nonce (or `nonce`: 12 bytes the
        caller took from os.urandom for this field alone)."""
        nonce = nonce or os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, text.encode("utf-8", "surrogatepass"), where)
        return binascii.b2a_base64(nonce + sealed, newline=False).decode("ascii")

    def open(self, where: bytes, sealed: str) -> str | None:
        """The text, or None if `sealed` was not sealed here with this key."""
        try:
            raw = binascii.a2b_base64(sealed)
            plain = self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], where)
        except (InvalidTag, binascii.Error, ValueError):
            return None
        return plain.decode("utf-8", "surrogatepass")
