"""The one deferred database, its connection settings, and group commit.

`database` is a proxy the models bind to; `open_database(url)` points it at SQLite or
PostgreSQL.

SQLite is opened so that a scrub really erases. An UPDATE in WAL mode would leave the old
page in the main file until a checkpoint, and a checkpoint per request starves when
several processes write. So SQLite runs with a rollback journal (`journal_mode=DELETE`):
the old page images go to the `-journal` file only while the transaction runs, the file
is deleted at commit, and `secure_delete` zeroes the space a shrinking value frees.
Committing costs fsyncs, so writes of concurrent requests share a transaction
(`GroupCommit`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import types
from typing import Any, Callable

import peewee
from playhouse.db_url import connect

database = peewee.DatabaseProxy()

SQLITE_PRAGMAS = {
    "journal_mode": "truncate",
    "synchronous": "full",
    "secure_delete": "on",
    "foreign_keys": 1,
    "busy_timeout": 10000,
}


class BaseModel(peewee.Model):
    class Meta:
        database = database
        legacy_table_names = False


def open_database(url: str, max_connections: int = 64) -> peewee.Database:
    """Open the database at `url` (sqlite:///path or postgresql://...) behind the proxy.

    Connections are pooled; a thread takes one per request and gives it back.
    """
    scheme, rest = url.split("://", 1)
    scheme = {"postgres": "postgresql"}.get(scheme, scheme)
    options = {"max_connections": max_connections, "stale_timeout": 300}
    if scheme == "sqlite":
        # BEGIN IMMEDIATE: a read-then-write transaction must not fail when another
        # process commits between its read and its write.
        options.update(pragmas=SQLITE_PRAGMAS, timeout=10, check_same_thread=False,
                       lock_type="IMMEDIATE")
    db = connect(f"{scheme}+pool://{rest}", **options)
    lock = ProcessWriteLock(f"{db.database}.lock") if scheme == "sqlite" else None
    db.group_commit = GroupCommit(db, lock)
    database.initialize(db)
    return db


class PreparedQuery:
    """A peewee query whose SQL is generated once per database, then run with new values.

    Generating SQL costs far more CPU than running it on an indexed row. `build` receives
    a namespace of marker strings, one per named parameter, and returns the query; the
    markers are found in the generated parameters, and each run substitutes its values,
    converted by the parameter's field as peewee would.
    """

    def __init__(self, build: Callable[[types.SimpleNamespace], peewee.Query],
                 **fields: peewee.Field):
        self._build = build
        self._fields = fields
        self._compiled: dict[int, tuple[str, list[tuple[str | None, Any]]]] = {}

    def _compile(self, db: peewee.Database):
        marks = {name: f"@@param:{name}@@" for name in self._fields}
        sql, params = self._build(types.SimpleNamespace(**marks)).sql()
        slots = []
        for param in params:
            name = next((n for n, m in marks.items() if isinstance(param, str) and m in param),
                        None)
            slots.append((name, param))
        missing = set(marks) - {name for name, _ in slots}
        if missing:
            raise ValueError(f"parameters not found in the query: {sorted(missing)}")
        return sql, slots

    def execute(self, **values: Any):
        """Run on the current database; returns the cursor."""
        db = database.obj
        compiled = self._compiled.get(id(db))
        if compiled is None:
            compiled = self._compiled[id(db)] = self._compile(db)
        sql, slots = compiled
        params = [self._fields[name].db_value(values[name]) if name else constant
                  for name, constant in slots]
        return db.execute_sql(sql, params)


class _Slot:
    __slots__ = ("work", "key", "result", "error", "done", "wake")

    def __init__(self, work: Callable[[], Any], key: str):
        self.work, self.key = work, key
        self.result = self.error = None
        self.done = False
        self.wake = threading.Event()


class GroupCommit:
    """Runs units of work of concurrent threads in shared transactions.

    `run(work)` returns `work()`'s result once the transaction holding it has committed.
    One waiting thread at a time leads: it takes the write lock, then every queued unit,
    runs them in one transaction, commits, and wakes their threads; if more units were
    queued meanwhile it hands the lead to the first of them. Each thread is woken once,
    either done or to lead. Units run in `key` order, so two processes locking the same
    rows take the locks in the same order.

    An exception a unit raises of one of the `expected` classes is that unit's own
    outcome (it must be raised before the unit writes anything); any other failure
    rolls the batch back and is raised to every unit in it.
    """

    def __init__(self, db: peewee.Database, process_lock: "ProcessWriteLock | None" = None):
        self._db = db
        self._process_lock = process_lock or contextlib.nullcontext()
        self._mutex = threading.Lock()
        self._queue: list[_Slot] = []
        self._leading = False

    def run(self, work: Callable[[], Any], *, key: str = "",
            expected: tuple[type[BaseException], ...] = ()) -> Any:
        slot = _Slot(work, key)
        with self._mutex:
            self._queue.append(slot)
            lead = not self._leading
            self._leading = True
        if not lead:
            slot.wake.wait()
        if not slot.done:  # woken to lead, or first in line
            self._lead(expected)
        if slot.error is not None:
            raise slot.error
        return slot.result

    def _lead(self, expected) -> None:
        with self._process_lock:
            with self._mutex:
                batch, self._queue = self._queue, []
            self._execute(sorted(batch, key=lambda s: s.key), expected)
        with self._mutex:
            if self._queue:
                self._queue[0].wake.set()
            else:
                self._leading = False
        for slot in batch:
            slot.done = True
            slot.wake.set()

    def _execute(self, batch: list[_Slot], expected) -> None:
        # The leading thread keeps its pooled connection for the next time it leads.
        self._db.connect(reuse_if_open=True)
        try:
            with self._db.atomic():
                for slot in batch:
                    try:
                        slot.result = slot.work()
                    except expected as exc:
                        slot.error = exc
        except BaseException as exc:
            for slot in batch:
                if not isinstance(slot.error, expected or ()):
                    slot.error, slot.result = exc, None


class ProcessWriteLock:
    """Serialises SQLite write transactions of several processes (workers) on one file.

    SQLite's own busy handler waits by sleeping with growing back-off, so under steady
    writes from two processes one of them can sleep for seconds; `flock` wakes the next
    writer as soon as the lock is free. The lock file lives beside the database.
    """

    def __init__(self, path: str):
        self.path = path
        self._fd: int | None = None
        self._pid: int | None = None

    def __enter__(self) -> None:
        if self._pid != os.getpid():  # opened after fork: a shared descriptor shares locks
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            self._pid = os.getpid()
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *exc) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
