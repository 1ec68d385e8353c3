"""Key-encryption keys (KEKs): the keys the key store's data keys are wrapped with
(models/store/keystore.py), held by a provider apart from both databases.

A provider wraps and unwraps data keys, and (if it can) makes a new current KEK and
destroys retired ones. Two are built in: `FileKeks`, a JSON file readable by its owner only
(the default, beside the key store), and `EnvKeks`, keys given in `REDACT_KEK` that the
operator rotates by hand. Vault transit or a cloud KMS fits the same interface: `wrap` and
`unwrap` are their encrypt and decrypt, `rotate` their key rotation, `destroy` their
minimum decryption version.

Wrapping is AES-256-GCM (a random 96-bit nonce; the data key's id as associated data, so a
wrapped key copied onto another id does not unwrap): ~100x cheaper here than AES key wrap.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import threading
import time
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12
KEY_BYTES = 32


class KeyEncryptionKeys(Protocol):
    def current(self) -> str:
        """The id of the KEK new data keys are wrapped with."""

    def wrap(self, key_id: str, data_key: bytes) -> tuple[str, bytes]:
        """(KEK id, wrapped key) for `data_key`, under the current KEK."""

    def wrap_many(self, keys: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
        """`wrap` of each (key id, data key)."""

    def unwrap(self, kek_id: str, key_id: str, wrapped: bytes) -> bytes | None:
        """The data key, or None if the KEK is gone (destroyed, or never held here)."""

    def rotate(self, now: datetime.datetime) -> str | None:
        """Make a new current KEK, retiring the one before; its id, or None if this
        provider cannot make keys (the operator rotates them)."""

    def retired(self) -> dict[str, datetime.datetime | None]:
        """The KEKs that are not current, by id, with when they were retired (None: not
        known)."""

    def destroy(self, kek_ids: list[str]) -> None:
        """Forget these KEKs for good."""


def kek_id(key: bytes) -> str:
    """A KEK's id: a digest of it (it reveals nothing of the key, and the same key has the
    same id in every process)."""
    return "kek_" + hashlib.sha256(b"redact-kek-id\x00" + key).hexdigest()[:16]


def _new_key() -> bytes:
    return AESGCM.generate_key(bit_length=KEY_BYTES * 8)


class _Wrapping:
    """Wrapping under keys by id, shared by the providers."""

    def __init__(self):
        self._aead: dict[str, AESGCM] = {}

    def _keys_changed(self, keys: dict[str, bytes]) -> None:
        self._aead = {kid: AESGCM(key) for kid, key in keys.items()}

    def current(self) -> str:
        raise NotImplementedError  # each provider says

    def wrap(self, key_id: str, data_key: bytes) -> tuple[str, bytes]:
        return self.wrap_many([(key_id, data_key)])[0]

    def wrap_many(self, keys: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
        kid = self.current()
        aead = self._aead[kid]
        nonces = os.urandom(NONCE_BYTES * len(keys))
        wrapped = []
        for at, (key_id, data_key) in zip(range(0, len(nonces), NONCE_BYTES), keys, strict=True):
            nonce = nonces[at : at + NONCE_BYTES]
            wrapped.append((kid, nonce + aead.encrypt(nonce, data_key, key_id.encode())))
        return wrapped

    def unwrap(self, kek_id: str, key_id: str, wrapped: bytes) -> bytes | None:
        aead = self._aead.get(kek_id)
        if aead is None:
            return None
        try:
            return aead.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], key_id.encode())
        except InvalidTag:
            return None


class EnvKeks(_Wrapping):
    """KEKs given as hex (64 digits each), comma-separated, the current one first: the
    operator rotates by putting a new key first (`redact keys generate-kek` makes one),
    running `redact keys rotate`, and removing the keys it reports unused."""

    def __init__(self, text: str):
        super().__init__()
        keys = []
        for part in text.split(","):
            try:
                key = bytes.fromhex(part.strip())
            except ValueError:
                key = b""
            if len(key) != KEY_BYTES:
                raise ValueError("each key must be 64 hex digits, keys separated by commas")
            keys.append(key)
        self._order = [kek_id(key) for key in keys]
        self._keys_changed(dict(zip(self._order, keys, strict=True)))

    def current(self) -> str:
        return self._order[0]

    def rotate(self, now: datetime.datetime) -> str | None:
        return None

    def retired(self) -> dict[str, datetime.datetime | None]:
        return dict.fromkeys(self._order[1:])

    def destroy(self, kek_ids: list[str]) -> None:
        return None  # the operator removes them from REDACT_KEK


def generate_kek() -> str:
    """A new KEK as `REDACT_KEK` takes it."""
    return _new_key().hex()


class FileKeks(_Wrapping):
    """KEKs kept in a JSON file (created readable by the owner only): each with its
    creation and retirement times. Another process that rotates rewrites the file: this one
    looks at it once a second at most as it wraps and unwraps, and reads it again when it
    changed (a new KEK known, a destroyed one forgotten)."""

    RELOAD_SECONDS = 1.0

    def __init__(self, path: str, now: datetime.datetime | None = None):
        super().__init__()
        self.path = path
        self._lock = threading.Lock()
        self._read_at = 0.0
        if not os.path.exists(path):
            self._write([self._entry(_new_key(), now or _utcnow())], create=True)
        self._load()

    @staticmethod
    def _entry(key: bytes, now: datetime.datetime) -> dict:
        return {
            "id": kek_id(key),
            "key": key.hex(),
            "created_at": now.isoformat(),
            "retired_at": None,
        }

    def _load(self) -> None:
        with open(self.path, encoding="ascii") as stored:
            self._mtime = os.fstat(stored.fileno()).st_mtime_ns
            entries = json.load(stored)["keys"]
        self._entries = entries
        self._keys_changed({e["id"]: bytes.fromhex(e["key"]) for e in entries})
        self._read_at = time.monotonic()

    def _refresh(self) -> None:
        """Read the file again if another process rewrote it (looked at once a second at
        most): a KEK it destroyed is forgotten here too, a new one known."""
        if time.monotonic() - self._read_at < self.RELOAD_SECONDS:
            return
        with self._lock:
            self._read_at = time.monotonic()
            if os.stat(self.path).st_mtime_ns != self._mtime:
                self._load()

    def unwrap(self, kek_id: str, key_id: str, wrapped: bytes) -> bytes | None:
        self._refresh()
        return super().unwrap(kek_id, key_id, wrapped)

    def wrap_many(self, keys: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
        self._refresh()
        return super().wrap_many(keys)

    def _write(self, entries: list[dict], create: bool = False) -> None:
        """The file replaced whole (a temporary file synced, then renamed)."""
        temporary = f"{self.path}.{os.getpid()}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump({"keys": entries}, out, indent=1)
            out.flush()
            os.fsync(out.fileno())
        if create:
            with contextlib.suppress(FileExistsError):  # of two creators, the first wins
                os.link(temporary, self.path)
            os.unlink(temporary)
        else:
            os.replace(temporary, self.path)
        directory = os.open(os.path.dirname(os.path.abspath(self.path)), os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def current(self) -> str:
        return next(e["id"] for e in reversed(self._entries) if e["retired_at"] is None)

    def rotate(self, now: datetime.datetime) -> str:
        with self._lock:
            self._load()
            entries = [
                {**e, "retired_at": e["retired_at"] or now.isoformat()} for e in self._entries
            ]
            entries.append(self._entry(_new_key(), now))
            self._write(entries)
            self._load()
        return self.current()

    def retired(self) -> dict[str, datetime.datetime | None]:
        return {
            e["id"]: datetime.datetime.fromisoformat(e["retired_at"])
            for e in self._entries
            if e["retired_at"] is not None
        }

    def destroy(self, kek_ids: list[str]) -> None:
        if not kek_ids:
            return
        with self._lock:
            self._load()
            self._write([e for e in self._entries if e["id"] not in set(kek_ids)])
            self._load()


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def kek_file(keystore_path: str) -> str:
    """Where a key store without REDACT_KEK keeps its KEKs: beside it."""
    return f"{keystore_path}.kek"
