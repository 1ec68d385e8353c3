"""Suppression: numbers an account refuses records about (an erased person stays erased).

A suppressed number is kept only as a keyed hash (BLAKE2b-128 under the key store's
`suppression` secret, apart from the subject index's key): the list cannot be read back
into numbers, in the data store or in any copy of it. The records API and `redact
transactions load` refuse a record whose sender or recipient is suppressed, and store and
log nothing of it. Each suppression and each lift is an entry of the account's erasure
log. Ingest reads the list as it stores (no cache), so a change holds on every worker as
soon as it commits.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

import peewee

from models.errors import InvalidSuppression, SuppressionNotFound
from models.proof import entries
from models.records.sealed import SEALED_COLUMNS
from models.store.base import BaseModel, UTCDateTimeField, database
from models.store.keys import normalise_number
from models.store.pages import Page, paginate
from models.store.state import current_store

PREFIX = "sup_"


class Suppression(BaseModel):
    """A number an account refuses records about, as its keyed hash."""

    api_key = peewee.CharField(max_length=64)
    digest = peewee.CharField(max_length=32)
    created_at = UTCDateTimeField()
    # The erasure log entry that suppressed it.
    log_index = peewee.BigIntegerField(null=True)

    class Meta:
        primary_key = peewee.CompositeKey("api_key", "digest")

    @property
    def public_id(self) -> str:
        return PREFIX + self.digest


SUPPRESSION_MODELS = (Suppression,)


class Hasher:
    """The suppression list's keyed hash of a number (None: not a number)."""

    def __init__(self, key: bytes):
        self._keyed = hashlib.blake2b(key=key, digest_size=16, person=b"redact-suppress")

    def digest(self, value: str | None) -> str | None:
        number = normalise_number(value)
        if number is None:
            return None
        hashed = self._keyed.copy()
        hashed.update(number.encode())
        return hashed.hexdigest()


def hasher() -> Hasher:
    """The current store's hasher (its key read from the key store once per process)."""
    return Hasher(current_store().keystore.secret("suppression"))


def suppression_resource(row: Suppression) -> dict:
    return {
        "object": "suppression",
        "id": row.public_id,
        "created_at": row.created_at.isoformat(),
        "log_index": row.log_index,
    }


def suppress_digests(
    api_key: str, digests: Iterable[str], *, now: datetime.datetime, source: str, trace_id: str
) -> list[str]:
    """Suppress the numbers whose hashes are `digests`, in the caller's transaction; each
    new one logged. The digests that were not suppressed before."""
    wanted = sorted(set(digests))
    present = {
        row.digest
        for row in Suppression.select(Suppression.digest).where(
            (Suppression.api_key == api_key) & Suppression.digest.in_(wanted)
        )
    }
    fresh = [digest for digest in wanted if digest not in present]
    if not fresh:
        return []
    positions = entries.append(
        [(api_key, "suppression", _entry(digest, source, trace_id)) for digest in fresh], now
    )
    Suppression.insert_many(
        [
            {"api_key": api_key, "digest": digest, "created_at": now, "log_index": position}
            for digest, position in zip(fresh, positions, strict=True)
        ]
    ).execute()
    return fresh


def suppress(
    api_key: str, number: str, *, now: datetime.datetime, source: str, trace_id: str
) -> tuple[Suppression, bool]:
    """Suppress `number` for the account: (the suppression, whether it is new).
    InvalidSuppression if `number` is no phone number."""
    digest = hasher().digest(number)
    if digest is None:
        raise InvalidSuppression(
            "number: not a phone number (7 to 15 digits, optionally with '+' and separators)"
        )
    with database.atomic():
        created = bool(
            suppress_digests(api_key, [digest], now=now, source=source, trace_id=trace_id)
        )
    return Suppression.get(
        (Suppression.api_key == api_key) & (Suppression.digest == digest)
    ), created


def find_suppression(api_key: str, suppression_id: str) -> Suppression:
    digest = suppression_id[len(PREFIX) :] if suppression_id.startswith(PREFIX) else None
    row = (
        Suppression.get_or_none((Suppression.api_key == api_key) & (Suppression.digest == digest))
        if digest
        else None
    )
    if row is None:
        raise SuppressionNotFound(suppression_id)
    return row


def lift(
    api_key: str, suppression_id: str, *, now: datetime.datetime, source: str, trace_id: str
) -> int:
    """Lift a suppression: records carrying the number are taken again. Logged; its log
    position. SuppressionNotFound if the account has no such suppression."""
    with database.atomic():
        row = find_suppression(api_key, suppression_id)
        [position] = entries.append(
            [(api_key, "suppression_lift", _entry(row.digest, source, trace_id))], now
        )
        Suppression.delete().where(
            (Suppression.api_key == api_key) & (Suppression.digest == row.digest)
        ).execute()
    return position


def list_suppressions(api_key: str, limit: int, starting_after: str | None) -> Page:
    after = None
    if starting_after is not None:
        after = find_suppression(api_key, starting_after).digest
    query = Suppression.select().where(Suppression.api_key == api_key)
    return paginate(query, Suppression.digest, False, limit, after, None)


def refused(rows: Sequence[dict]) -> dict[int, list[str]]:
    """The rows (by index) whose numbers an account suppresses, with the names of the
    fields that carry them."""
    if not rows:
        return {}
    hashing = hasher()
    digests: dict[int, list[tuple[str, str]]] = {}
    for index, row in enumerate(rows):
        for column in ("sender", "recipient"):
            digest = hashing.digest(row[column])
            if digest is not None:
                digests.setdefault(index, []).append((SEALED_COLUMNS[column], digest))
    accounts = sorted({rows[index]["account"] for index in digests})
    every = sorted({digest for pairs in digests.values() for _, digest in pairs})
    suppressed: set[tuple[str, str]] = set()
    for start in range(0, len(every), 500):
        query = Suppression.select(Suppression.api_key, Suppression.digest).where(
            Suppression.api_key.in_(accounts) & Suppression.digest.in_(every[start : start + 500])
        )
        found_rows: list[Any] = list(query.tuples())
        suppressed.update(map(tuple, found_rows))
    found = {}
    for index, pairs in digests.items():
        fields = [name for name, digest in pairs if (rows[index]["account"], digest) in suppressed]
        if fields:
            found[index] = fields
    return found


def _entry(digest: str, source: str, trace_id: str) -> dict:
    return {"suppression": PREFIX + digest, "source": source, "trace_id": trace_id}
