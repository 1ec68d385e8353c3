"""The one deferred database, its connection settings, and erasure of residue.

`database` is a proxy the models bind to; `open_database(url)` points it at SQLite or
PostgreSQL. SQLite is opened so that a scrub really erases: `secure_delete` zeroes freed
space, and `erase_residue()` checkpoints the write-ahead log into the main file and
truncates it, so neither file keeps the old bytes.
"""

from __future__ import annotations

import threading

import peewee
from playhouse.db_url import connect

database = peewee.DatabaseProxy()

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "synchronous": "normal",
    "secure_delete": "on",
    "foreign_keys": 1,
    "busy_timeout": 10000,
}


class BaseModel(peewee.Model):
    class Meta:
        database = database
        legacy_table_names = False


def open_database(url: str) -> peewee.Database:
    """Open the database at `url` (sqlite:///path or postgresql://...) behind the proxy.

    Connections are pooled per thread; one process may serve many requests on one
    connection.
    """
    scheme, rest = url.split("://", 1)
    scheme = {"postgres": "postgresql"}.get(scheme, scheme)
    options = {"max_connections": 32, "stale_timeout": 300}
    if scheme == "sqlite":
        # BEGIN IMMEDIATE: a read-then-write transaction must not fail when another
        # process commits between its read and its write.
        options.update(pragmas=SQLITE_PRAGMAS, timeout=10, check_same_thread=False,
                       lock_type="IMMEDIATE")
    db = connect(f"{scheme}+pool://{rest}", **options)
    db.residue = ResidueEraser(db)
    database.initialize(db)
    return db


def is_sqlite(db: peewee.Database | None = None) -> bool:
    db = db or database.obj
    return isinstance(db, peewee.SqliteDatabase)


class ResidueEraser:
    """Makes committed scrubs reach the main SQLite file and empties the WAL.

    A checkpoint costs a few fsyncs, so concurrent callers share one: `erase()` returns
    once a checkpoint that started after the call has completed. On PostgreSQL it does
    nothing here; old row versions are removed by VACUUM (see README).
    """

    def __init__(self, db: peewee.Database):
        self._db = db
        self._condition = threading.Condition()
        self._started = 0
        self._completed = 0
        self._running = False

    def erase(self) -> None:
        if not is_sqlite(self._db):
            return
        with self._condition:
            needed = self._started + 1
            while self._completed < needed:
                if self._running:
                    self._condition.wait()
                    continue
                self._running = True
                self._started += 1
                generation = self._started
                self._condition.release()
                try:
                    self._checkpoint()
                finally:
                    self._condition.acquire()
                    self._running = False
                    self._condition.notify_all()
                self._completed = generation

    def _checkpoint(self) -> None:
        # TRUNCATE waits (busy handler) for other connections' readers and writers; it
        # reports busy=1 when it could not finish, e.g. a writer in another process held
        # on past the timeout. Retry until the log is empty: a 204 promises erasure.
        for _ in range(50):
            busy, _log, _done = self._db.execute_sql(
                "PRAGMA wal_checkpoint(TRUNCATE)"
            ).fetchone()
            if not busy:
                return
        raise peewee.OperationalError("could not checkpoint the write-ahead log")
