"""The open store: its database, the group commit that writes to it, and the key of its
phone-number index, opened once per process by `open_store(url)`.

SQLite is opened so that a scrub really erases. It runs with a rollback journal
(`journal_mode=TRUNCATE`): the old page images are in the `-journal` file only while the
transaction runs, the file is truncated to nothing at commit, and `secure_delete` zeroes
the space a shrinking value frees. Committing costs fsyncs, which
models/store/group_commit.py shares among writers (models/store/journal.py says why not
WAL mode, which measured faster).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator

import peewee
from playhouse.pool import PooledDatabase

from models.errors import NoSigningKey
from models.store.base import database
from models.store.group_commit import GroupCommit
from models.store.journal import JournalPages
from models.store.kek import EnvKeks, FileKeks, KeyEncryptionKeys, kek_file
from models.store.keys import SigningKey, SubjectKey, signing_key_file, subject_key_file
from models.store.keystore import KeyStore, keystore_file
from models.store.postgres import open_pooled
from models.store.process_lock import ProcessWriteLock, held_apart

SQLITE_PRAGMAS = {
    "journal_mode": "truncate",
    "synchronous": "full",
    "secure_delete": "on",
    "foreign_keys": 1,
    "busy_timeout": 10000,
}


CONNECT_TIMEOUT_SECONDS = 5


@dataclasses.dataclass(frozen=True)
class Store:
    """What the models work on: the database the proxy points at, the group commit every
    write of a redaction goes through, and the key of the phone-number index."""

    database: peewee.Database
    group_commit: GroupCommit
    subject_key: SubjectKey
    # The data keys personal fields are sealed under, in a database of their own.
    keystore: KeyStore
    # Signs tree heads and receipts (models/proof/signing.py); None on PostgreSQL without
    # REDACT_SIGNING_KEY, where signing fails with NoSigningKey.
    signing_key: SigningKey | None = None
    # SQLite: the lock file every process's group commit writes under.
    write_lock: str | None = None

    def writers_excluded(self) -> contextlib.AbstractContextManager:
        """For a write outside the group commit that the checks of a batch it prepared
        ahead must not miss (a legal hold): on SQLite, its writers' lock, so that the write
        cannot fall between that batch's checks and its own transaction (GroupCommit);
        nothing on PostgreSQL, whose group commit prepares nothing ahead."""
        return contextlib.nullcontext() if self.write_lock is None else held_apart(self.write_lock)

    def signer(self) -> SigningKey:
        if self.signing_key is None:
            raise NoSigningKey()
        return self.signing_key

    def close(self) -> None:
        """Give back what the store holds in this process: the group commit's writer
        thread (after what is queued has committed), the lock file, every pooled
        connection. Like Peewee's pool, a store used again opens what it needs."""
        self.group_commit.close()
        self.keystore.close()
        # Idle connections only: one another thread is using (a job's batch as a server
        # stops) is given back by it, not pulled from under it.
        if isinstance(self.database, PooledDatabase):
            self.database.close_idle()
        self.database.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_current: Store | None = None


@contextlib.contextmanager
def current_store_kept() -> Iterator[Store | None]:
    """The block may open a store (`open_store`, a command run in this process); after it,
    the store the block left current, if it is another, is closed, and the store current
    before the block (None if none) is current again, the models' proxy pointing at its
    database. (A block that opens several closes each itself.)"""
    global _current
    before = _current
    try:
        yield before
    finally:
        opened = _current
        if opened is not None and opened is not before:
            opened.close()
        _current = before
        if before is not None:
            database.initialize(before.database)


def current_store() -> Store:
    """The store `open_store` opened last in this process."""
    if _current is None:
        raise RuntimeError("no store is open: call models.store.state.open_store(url) first")
    return _current


def open_store(
    url: str,
    max_connections: int = 64,
    subject_key: bytes | None = None,
    signing_key: str | None = None,
    keystore_url: str | None = None,
    kek: str | None = None,
    kek_path: str | None = None,
) -> Store:
    """Open the database at `url` (sqlite:///path or postgresql://...) behind the proxy, and
    make it the current store.

    Connections are pooled: the group commit's writer holds one while it is busy, and
    other threads (reads, jobs, readiness) take one for a unit of work and give it back.
    `subject_key` keys the phone-number index (models/store/keys.py); without one, an SQLite
    database keeps its key in `<file>.key` beside it, and PostgreSQL cannot be opened.
    """
    global _current
    scheme, rest = url.split("://", 1)
    scheme = {"postgres": "postgresql"}.get(scheme, scheme)
    options: dict = {"max_connections": max_connections, "stale_timeout": 300}
    if scheme == "sqlite":
        # BEGIN IMMEDIATE: a read-then-write transaction must not fail when another
        # process commits between its read and its write.
        options.update(
            pragmas=SQLITE_PRAGMAS, timeout=10, check_same_thread=False, lock_type="IMMEDIATE"
        )
    elif "connect_timeout=" not in rest:
        # A server that is down answers at once; an unreachable host must not hold a
        # request past this (the request then gets its 503).
        options["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
    db = open_pooled(scheme, rest, **options)
    if subject_key is not None:
        key = SubjectKey(subject_key)
    elif scheme == "sqlite" and db.database != ":memory:":
        key = SubjectKey.from_file(subject_key_file(db.database))
    elif scheme == "sqlite":
        key = SubjectKey(os.urandom(32))
    else:
        raise ValueError("a PostgreSQL store needs a subject key (REDACT_SUBJECT_KEY)")
    signer: SigningKey | None = None
    if signing_key:
        signer = SigningKey.parse(signing_key)
    elif scheme == "sqlite" and db.database != ":memory:":
        signer = SigningKey.from_file(signing_key_file(db.database))
    elif scheme == "sqlite":
        signer = SigningKey.generate()
    keystore = KeyStore.open(
        _keystore_url(scheme, db.database, keystore_url),
        _keks(kek, kek_path, keystore_url, db.database),
    )
    lock_path = f"{db.database}.lock" if scheme == "sqlite" else None
    lock = ProcessWriteLock(lock_path) if lock_path else None
    pages = JournalPages(db.database) if scheme == "sqlite" and db.database != ":memory:" else None
    database.initialize(db)
    _current = Store(db, GroupCommit(db, lock, pages), key, keystore, signer, lock_path)
    return _current


def _keystore_url(scheme: str, path: str, given: str | None) -> str:
    if given:
        return given
    if scheme != "sqlite" or path == ":memory:":
        raise ValueError(
            "a PostgreSQL or in-memory store needs a key store apart from it (REDACT_KEYSTORE_URL)"
        )
    return f"sqlite:///{keystore_file(path)}"


def _keks(
    kek: str | None, kek_path: str | None, keystore_url: str | None, path: str
) -> KeyEncryptionKeys:
    if kek:
        return EnvKeks(kek)
    if kek_path:
        return FileKeks(kek_path)
    if keystore_url and not keystore_url.startswith("sqlite:///"):
        raise ValueError(
            "a key store on PostgreSQL needs its KEKs named (REDACT_KEK or REDACT_KEK_FILE)"
        )
    keystore_path = keystore_url.split(":///", 1)[1] if keystore_url else keystore_file(path)
    return FileKeks(kek_file(keystore_path))
