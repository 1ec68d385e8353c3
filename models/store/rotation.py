"""Rotating the key-encryption keys: every live data key re-wrapped under a new KEK, and
the KEKs retired longer ago than the bound destroyed, so that a copy of the key store
older than the bound unwraps nothing (erased keys included)."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable
from typing import Any

from models.store.keystore import DataKey, KeySecret, KeyStore, chunks


@dataclasses.dataclass
class Rotation:
    new_kek: str | None
    """The KEK made by this run (None: the run resumed an interrupted one, or the
    provider cannot make keys: REDACT_KEK)."""
    rewrapped: int
    destroyed: list[str]
    """KEKs destroyed (or, for REDACT_KEK, no longer needed: remove them)."""
    retained: list[str]
    """Retired KEKs kept: inside the bound, or still wrapping a key."""


def rotate(
    keystore: KeyStore,
    now: datetime.datetime,
    retain: datetime.timedelta,
    progress: Callable[[int, int], None] | None = None,
) -> Rotation:
    """Rotate: make a new current KEK (unless keys still wait to be re-wrapped from a run
    that stopped: then finish that one), re-wrap every live key under it, destroy the
    retired KEKs past `retain` that wrap nothing, and erase what the re-wrap left behind
    (SQLite's WAL, PostgreSQL's old row versions). Resumable: run it again."""
    new = None if pending(keystore) else keystore.keks.rotate(now)
    rewrapped = rewrap(keystore, progress=progress)
    in_use = keks_in_use(keystore)
    destroyed, retained = [], []
    for kek, retired_at in sorted(keystore.keks.retired().items()):
        if kek not in in_use and (retired_at is None or now - retired_at >= retain):
            destroyed.append(kek)
        else:
            retained.append(kek)
    keystore.keks.destroy(destroyed)
    keystore.vacuum()
    return Rotation(new, rewrapped, destroyed, retained)


def rewrap(
    keystore: KeyStore, batch: int = 5000, progress: Callable[[int, int], None] | None = None
) -> int:
    """Re-wrap every live key (and secret) not under the current KEK with it, a batch
    per transaction (so an interrupted run resumes where it stopped); how many."""
    current = keystore.keks.current()
    done = 0
    with keystore.connected():
        total = pending(keystore)
        for secret in KeySecret.select().where(KeySecret.kek != current).bind(keystore.db):
            key = keystore.keks.unwrap(secret.kek, f"secret:{secret.name}", bytes(secret.wrapped))
            if key is not None:
                kek, wrapped = keystore.keks.wrap(f"secret:{secret.name}", key)
                KeySecret.update(kek=kek, wrapped=wrapped).where(
                    KeySecret.name == secret.name
                ).bind(keystore.db).execute()
        after = ""
        while True:
            rows: list[Any] = list(
                DataKey.select(DataKey.id, DataKey.kek, DataKey.wrapped)
                .where(
                    DataKey.wrapped.is_null(False) & (DataKey.kek != current) & (DataKey.id > after)
                )
                .order_by(DataKey.id)
                .bind(keystore.db)
                .limit(batch)
                .tuples()
            )
            if not rows:
                break
            updates = []
            for key_id, kek, wrapped in rows:
                key = keystore.keks.unwrap(kek, key_id, bytes(wrapped))
                if key is not None:
                    updates.append((*keystore.keks.wrap(key_id, key), key_id))
            with keystore.db.atomic():
                _update_wrapped(keystore, updates)
            done += len(rows)
            after = rows[-1][0]
            if progress is not None:
                progress(done, total)
    return done


def _update_wrapped(keystore: KeyStore, updates: list[tuple[str, bytes, str]]) -> None:
    p = keystore.param
    if keystore.sqlite:
        keystore.db.cursor().executemany(
            f"UPDATE data_key SET kek = {p}, wrapped = {p} WHERE id = {p}", updates
        )
        return
    for chunk in chunks(updates, 1000):
        values = ", ".join([f"({p}, {p}::bytea, {p})"] * len(chunk))
        keystore.db.execute_sql(
            f"UPDATE data_key SET kek = v.kek, wrapped = v.wrapped FROM (VALUES {values}) "
            "AS v(kek, wrapped, id) WHERE data_key.id = v.id",
            [value for row in chunk for value in row],
        )


def pending(keystore: KeyStore) -> int:
    """Live keys not wrapped under the current KEK."""
    current = keystore.keks.current()
    with keystore.connected():
        return (
            DataKey.select()
            .where(DataKey.wrapped.is_null(False) & (DataKey.kek != current))
            .bind(keystore.db)
            .count()
        )


def keks_in_use(keystore: KeyStore) -> set[str]:
    with keystore.connected():
        used: set[str] = {
            str(row.kek)
            for row in DataKey.select(DataKey.kek)
            .where(DataKey.kek.is_null(False))
            .distinct()
            .bind(keystore.db)
        }
        used.update(row.kek for row in KeySecret.select(KeySecret.kek).distinct().bind(keystore.db))
    return used
