"""Redactions acknowledged before their scrub committed (the Redact API's), kept in the key
store until the scrub has.

A redaction through the Redact API is acknowledged (`204`) once its record's key is
destroyed, durably: from then on nothing of the record opens, from any copy. Its scrub
and its erasure-log entry commit in the data store just after. So that a crash (or a
failed commit) between the two loses neither, the key store's transaction that destroys
the key also stores the redaction's intent (who asked, when, why), and the intent is
deleted once the data store has committed the scrub (with a later destroy, or when the
key store closes). An intent still there is completed from what it says by whoever meets
it first: the next start of the service, a read of the record, or a retry
(models/erasure/settling.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Sequence

import peewee

logger = logging.getLogger("redact.store.pending")


class PendingScrub(peewee.Model):
    """One acknowledged redaction whose scrub may not have committed yet, by the id of
    the data key it destroyed; `request` is its JSON (models/erasure/settling.py)."""

    key_id = peewee.CharField(max_length=32, primary_key=True)
    request = peewee.TextField()

    class Meta:
        legacy_table_names = False


class Intents:
    """The key store's pending scrubs: written in the key store's transactions, read by
    whoever completes them."""

    def __init__(self, db: peewee.Database):
        self.db = db
        p = db.param
        self._insert = (
            "INSERT INTO pending_scrub (key_id, request) VALUES {} "
            "ON CONFLICT (key_id) DO UPDATE SET request = excluded.request"
        )
        self._row = f"({p}, {p})"
        self._delete = "DELETE FROM pending_scrub WHERE key_id IN ({})"
        self._select = "SELECT key_id, request FROM pending_scrub"
        self._param = p
        self._settled: list[str] = []  # scrubs committed, intents to delete
        self._lock = threading.Lock()

    def statements(self, intents: dict[str, str]) -> list[tuple[str, list]]:
        """The statements that store `intents` (key id: request) and delete the intents
        settled since the last call; for the key store's transaction."""
        with self._lock:
            settled, self._settled = self._settled, []
        settled = [key_id for key_id in settled if key_id not in intents]  # stored anew
        statements = []
        for chunk in chunks(sorted(intents), 400):
            rows = ", ".join([self._row] * len(chunk))
            values = [value for key_id in chunk for value in (key_id, intents[key_id])]
            statements.append((self._insert.format(rows), values))
        statements.extend(self._deletes(settled))
        return statements

    def settle(self, key_ids: Iterable[str]) -> None:
        """These intents' scrubs have committed: their rows go with the next destroy (or
        `flush`)."""
        with self._lock:
            self._settled.extend(key_ids)

    def flush(self) -> None:
        """Delete the settled intents now (the key store closes)."""
        with self._lock:
            settled, self._settled = self._settled, []
        if not settled:
            return
        try:
            with self.db.connection_context(), self.db.atomic():
                for sql, params in self._deletes(settled):
                    self.db.execute_sql(sql, params)
        except peewee.PeeweeException as exc:  # they are settled at the next start instead
            logger.warning("could not delete %d settled intents: %s", len(settled), exc)

    def read(self, key_ids: Sequence[str] | None = None) -> dict[str, str]:
        """The intents still stored (of `key_ids`, or all), by key id; on a connection the
        caller holds."""
        if key_ids is None:
            return dict(self.db.execute_sql(self._select).fetchall())
        found: dict[str, str] = {}
        for chunk in chunks(sorted(set(key_ids)), 500):
            marks = ", ".join([self._param] * len(chunk))
            sql = f"{self._select} WHERE key_id IN ({marks})"
            found.update(self.db.execute_sql(sql, list(chunk)).fetchall())
        return found

    def _deletes(self, key_ids: Sequence[str]) -> list[tuple[str, list]]:
        return [
            (self._delete.format(", ".join([self._param] * len(chunk))), list(chunk))
            for chunk in chunks(sorted(set(key_ids)), 500)
        ]


def as_one_statement(statements: list[tuple[str, list]]) -> tuple[str, list]:
    """PostgreSQL: `statements` (writes) as one, the first ones as data-modifying common
    table expressions: one round trip, atomic without a transaction around it."""
    *first, (last, _) = statements
    steps = ", ".join(f"step{n} AS ({sql})" for n, (sql, _) in enumerate(first))
    return f"WITH {steps} {last}", [value for _, values in statements for value in values]


def chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
