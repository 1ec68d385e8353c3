"""The key store: the data keys personal fields are encrypted under, in a database of its
own (never the data store's), each wrapped by a key-encryption key (models/store/kek.py).

Erasure destroys a data key: its row keeps the id and when it was destroyed (a tombstone,
so receipts can name it) and loses the wrapped key. `destroy` returns only once that is
durable, and erases for real: on SQLite the key store runs as the data store does, with
`secure_delete` (the destroyed key's bytes are zeroed in the page that replaces it) and a
rollback journal truncated at commit, so no file holds the (wrapped) key after it; on
PostgreSQL the maintenance pass vacuums the table (models/worker/maintenance.py).

Data keys are never cached: each read unwraps what it needs, so a key is unusable in every
process the moment its destruction commits.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future

import peewee

from models.errors import KeyStoreUnusable
from models.store.base import UTCDateTimeField
from models.store.group_commit import GroupCommit
from models.store.kek import KEY_BYTES, KeyEncryptionKeys
from models.store.pending import Intents, PendingScrub, as_one_statement, chunks
from models.store.postgres import open_pooled

# Bound to no database: each query of the key store names its own (`Query.bind`), so that
# several key stores (a live one, a copy) can be open in one process.

# As the data store (models/store/state.py): a rollback journal truncated at commit, so a
# destroyed key's old page exists only while its transaction runs; no shared-memory file
# (WAL's), whose mapping turns an unwritable file into a crash rather than an error.
SQLITE_PRAGMAS = {
    "journal_mode": "truncate",
    "synchronous": "full",
    "secure_delete": "on",
    "busy_timeout": 10000,
}


class _KeyModel(peewee.Model):
    class Meta:
        legacy_table_names = False


class DataKey(_KeyModel):
    """One data key: wrapped under a KEK while it lives, a tombstone once destroyed."""

    id = peewee.CharField(max_length=32, primary_key=True)
    # No index on `kek`: only a rotation looks keys up by it, and every erasure and every
    # record stored would pay for keeping one.
    kek = peewee.CharField(max_length=40, null=True)
    wrapped = peewee.BlobField(null=True)
    destroyed_at = UTCDateTimeField(null=True)


class KeySecret(_KeyModel):
    """A named secret of the service kept with the data keys (e.g. the suppression list's
    hash key), wrapped the same way."""

    name = peewee.CharField(max_length=40, primary_key=True)
    kek = peewee.CharField(max_length=40)
    wrapped = peewee.BlobField()


KEY_MODELS = (DataKey, KeySecret, PendingScrub)


def new_data_key() -> bytes:
    return os.urandom(KEY_BYTES)


class KeyStore:
    """The open key store: its database and the KEKs its keys are wrapped with."""

    def __init__(self, db: peewee.Database, keks: KeyEncryptionKeys):
        self.db = db
        self.keks = keks
        self.sqlite = isinstance(db, peewee.SqliteDatabase)
        # Destroys from every thread of the process share transactions on one writer
        # thread, which keeps its connection while busy (a pooled PostgreSQL connection
        # costs a round trip each time it is lent).
        self._destroys = GroupCommit(db, transaction=False)
        self._secrets: dict[str, bytes] = {}
        self.intents = Intents(db)  # acknowledged redactions' (models/store/pending.py)
        p = db.param
        self._sql_fetch = "SELECT id, kek, wrapped FROM data_key WHERE id IN ({})"
        self.param = p
        self._sql_insert = "INSERT INTO data_key (id, kek, wrapped) VALUES " + f"({p}, {p}, {p})"
        self._sql_destroy = (
            f"UPDATE data_key SET kek = NULL, wrapped = NULL, destroyed_at = {p} "
            "WHERE id IN ({}) AND destroyed_at IS NULL"
        )

    @classmethod
    def open(cls, url: str, keks: KeyEncryptionKeys, max_connections: int = 64) -> KeyStore:
        scheme, rest = url.split("://", 1)
        scheme = {"postgres": "postgresql"}.get(scheme, scheme)
        options: dict = {"max_connections": max_connections, "stale_timeout": 300}
        if scheme == "sqlite":
            options.update(pragmas=SQLITE_PRAGMAS, timeout=10, check_same_thread=False)
        elif "connect_timeout=" not in rest:
            options["connect_timeout"] = 5
        db = open_pooled(scheme, rest, **options)
        return cls(db, keks)

    @contextlib.contextmanager
    def connected(self) -> Iterator[None]:
        """A connection for the block (the thread's own if it holds one already)."""
        if self.db.is_closed():
            with self.db.connection_context():
                yield
        else:
            yield

    def create_tables(self) -> None:
        """The key store's tables; on SQLite keyed by the key's id alone (`without_rowid`:
        one B-tree a key, not a row and an index), as the erasure log's tables are."""
        DataKey._meta.without_rowid = self.sqlite  # PostgreSQL has no such option
        try:
            with self.connected(), self.db.bind_ctx(KEY_MODELS):
                self.db.create_tables(KEY_MODELS, safe=True)
        finally:
            DataKey._meta.without_rowid = False

    def close(self) -> None:
        self._destroys.close()  # what it was destroying, destroyed first
        self.intents.flush()
        close_idle = getattr(self.db, "close_idle", None)
        if close_idle is not None:
            close_idle()
        self.db.close()

    # --- data keys ---

    def create(self, count: int) -> list[tuple[str, bytes]]:
        """`count` new data keys as (id, key), stored (wrapped) and committed durably
        before this returns: data encrypted under them may be written after."""
        # One read of the system's randomness for the lot (ids and keys, then the wraps'
        # nonces), not one per key: storing 1,000 records makes 1,000 keys.
        random = os.urandom(count * (16 + KEY_BYTES))
        made = [
            (random[at : at + 16].hex(), random[at + 16 : at + 16 + KEY_BYTES])
            for at in range(0, len(random), 16 + KEY_BYTES)
        ]
        rows = [
            (key_id, *wrapped)
            for (key_id, _), wrapped in zip(made, self.keks.wrap_many(made), strict=True)
        ]
        with self.connected(), self.db.atomic():
            for chunk in chunks(rows, 300):
                sql = self._sql_insert + f", ({self.param}, {self.param}, {self.param})" * (
                    len(chunk) - 1
                )
                self.db.execute_sql(sql, [value for row in chunk for value in row])
        return made

    def fetch(self, key_ids: Iterable[str]) -> dict[str, bytes]:
        """The live data keys among `key_ids`, unwrapped; a destroyed key, or one whose
        KEK is gone, is absent."""
        wanted = sorted(set(key_ids))
        found: dict[str, bytes] = {}
        if not wanted:
            return found
        with self.connected():
            for chunk in chunks(wanted, 500):
                sql = self._sql_fetch.format(", ".join([self.param] * len(chunk)))
                for key_id, kek, wrapped in self.db.execute_sql(sql, chunk).fetchall():
                    if wrapped is None:
                        continue
                    key = self.keks.unwrap(kek, key_id, bytes(wrapped))
                    if key is not None:
                        found[key_id] = key
        return found

    def destroy(self, key_ids: Sequence[str], now: datetime.datetime) -> None:
        """Destroy these data keys, durably, before returning (unknown or destroyed ids
        are skipped)."""
        self.destroying(key_ids, now).result()

    def destroying(
        self,
        key_ids: Sequence[str],
        now: datetime.datetime,
        intents: dict[str, str] | None = None,
    ) -> Future[None]:
        """`destroy` begun on the key store's writer thread, so that the caller's statements
        run while the key store commits; the caller waits for the result before it commits
        anything that relies on the keys being gone (the result raises what `destroy`
        raised). Destroys asked for meanwhile by other threads commit with it. `intents`
        (key id: request) are stored in the same transaction (models/store/pending.py)."""
        if not key_ids:
            done: Future[None] = Future()
            done.set_result(None)
            return done
        return self._destroys.submit(self._destroy_batch, (list(key_ids), now, intents))

    def _destroy_batch(self, items: list[tuple]) -> list:
        """The destroys of `items` (key ids, when, intents), atomically: as one statement
        (its own transaction, durable when it returns) on PostgreSQL, and on SQLite when
        they share a time, number at most 500 keys and store no intents; else in one
        transaction."""
        by_stamp: dict = {}
        intents: dict[str, str] = {}
        for key_ids, now, wanted in items:
            by_stamp.setdefault(DataKey.destroyed_at.db_value(now), set()).update(key_ids)
            intents.update(wanted or {})
        statements = [
            (self._sql_destroy.format(", ".join([self.param] * len(chunk))), [stamp, *chunk])
            for stamp, key_ids in by_stamp.items()
            for chunk in chunks(sorted(key_ids), 500)
        ]
        if intents:
            statements.extend(self.intents.statements(intents))
        if not self.sqlite and len(statements) > 1:  # one round trip, not BEGIN, each, COMMIT
            statements = [as_one_statement(statements)]
        with self.db.atomic() if len(statements) > 1 else contextlib.nullcontext():
            for sql, params in statements:
                self.db.execute_sql(sql, params)
        return [None] * len(items)

    def pending(self, key_ids: Sequence[str] | None = None) -> dict[str, str]:
        """The intents of acknowledged redactions still stored (of `key_ids`, or all)."""
        with self.connected():
            return self.intents.read(key_ids)

    def discard(self, key_ids: Sequence[str]) -> None:
        """Delete keys that never protected stored data (records that were not stored)."""
        if not key_ids:
            return
        with self.connected(), self.db.atomic():
            for chunk in chunks(sorted(set(key_ids)), 500):
                DataKey.delete().where(DataKey.id.in_(chunk)).bind(self.db).execute()

    def destroyed(self, key_ids: Iterable[str]) -> set[str]:
        """Which of `key_ids` are destroyed (or unknown here)."""
        wanted = sorted(set(key_ids))
        live: set[str] = set()
        with self.connected():
            for chunk in chunks(wanted, 500):
                query = (
                    DataKey.select(DataKey.id)
                    .where(DataKey.id.in_(chunk) & DataKey.wrapped.is_null(False))
                    .bind(self.db)
                )
                live.update(row.id for row in query)
        return set(wanted) - live

    # --- secrets ---

    def secret(self, name: str) -> bytes:
        """The named secret, made (32 random bytes) and stored the first time; kept in
        this process once read (a secret is never destroyed, unlike a data key)."""
        found = self._secrets.get(name)
        if found is None:
            found = self._secrets[name] = self._stored_secret(name)
        return found

    def _stored_secret(self, name: str) -> bytes:
        with self.connected():
            for _ in range(2):
                row = KeySecret.select().where(KeySecret.name == name).bind(self.db).first()
                if row is not None:
                    key = self.keks.unwrap(row.kek, f"secret:{name}", bytes(row.wrapped))
                    if key is None:
                        raise KeyStoreUnusable(f"{name} secret")
                    return key
                kek, wrapped = self.keks.wrap(f"secret:{name}", new_data_key())
                insert = KeySecret.insert(name=name, kek=kek, wrapped=wrapped)
                insert.on_conflict_ignore().bind(self.db).execute()
        raise KeyStoreUnusable(f"{name} secret")  # stored by another, yet not readable

    def live_count(self) -> int:
        with self.connected():
            return DataKey.select().where(DataKey.wrapped.is_null(False)).bind(self.db).count()

    def vacuum(self) -> None:
        """Reclaim destroyed keys' old row versions (PostgreSQL; SQLite needs nothing)."""
        if self.sqlite:
            return
        with self.connected():
            conn = self.db.connection()
            conn.rollback()
            autocommit = conn.autocommit
            try:
                conn.autocommit = True
                self.db.execute_sql('VACUUM "data_key"')
                self.db.execute_sql('VACUUM "key_secret"')
            finally:
                conn.autocommit = autocommit


def keystore_file(database_path: str) -> str:
    """Where an SQLite store without REDACT_KEYSTORE_URL keeps its key store: beside it."""
    return f"{database_path}.keystore"
