"""The one deferred database, its connection settings, and group commit.

`database` is a proxy the models bind to; `open_database(url)` points it at SQLite or
PostgreSQL.

SQLite is opened so that a scrub really erases. An UPDATE in WAL mode would leave the old
page in the main file until a checkpoint, and a checkpoint per request starves when
several processes write. So SQLite runs with a rollback journal (`journal_mode=TRUNCATE`):
the old page images are in the `-journal` file only while the transaction runs, the file
is truncated to nothing at commit, and `secure_delete` zeroes the space a shrinking value
frees. Committing costs fsyncs, so the writes of concurrent requests share a transaction
(`GroupCommit`), and processes writing one file take turns through a lock file
(`ProcessWriteLock`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime
import fcntl
import itertools
import logging
import os
import queue
import threading
from collections.abc import Callable
from typing import Any

import peewee
from playhouse.db_url import connect

from .subjects import SubjectKey, key_file

database = peewee.DatabaseProxy()

log = logging.getLogger("redact.store")

SQLITE_PRAGMAS = {
    "journal_mode": "truncate",
    "synchronous": "full",
    "secure_delete": "on",
    "foreign_keys": 1,
    "busy_timeout": 10000,
}


class UTCDateTimeField(peewee.DateTimeField):
    """Timestamps stored naive in UTC, returned aware."""

    def db_value(self, value):
        if isinstance(value, datetime.datetime) and value.tzinfo is not None:
            value = value.astimezone(datetime.UTC).replace(tzinfo=None)
        return super().db_value(value)

    def python_value(self, value):
        value = super().python_value(value)
        if isinstance(value, datetime.datetime) and value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        return value


class BaseModel(peewee.Model):
    class Meta:
        database = database
        legacy_table_names = False


CONNECT_TIMEOUT_SECONDS = 5


def open_database(
    url: str, max_connections: int = 64, subject_key: bytes | None = None
) -> peewee.Database:
    """Open the database at `url` (sqlite:///path or postgresql://...) behind the proxy.

    Connections are pooled: the group commit's writer holds one while it is busy, and
    other threads (reads, jobs, readiness) take one for a unit of work and give it back.
    `subject_key` keys the phone-number index (models/subjects.py); without one, an SQLite
    database keeps its key in `<file>.key` beside it, and PostgreSQL cannot be opened.
    """
    scheme, rest = url.split("://", 1)
    scheme = {"postgres": "postgresql"}.get(scheme, scheme)
    options = {"max_connections": max_connections, "stale_timeout": 300}
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
    db = connect(f"{scheme}+pool://{rest}", **options)
    lock = ProcessWriteLock(f"{db.database}.lock") if scheme == "sqlite" else None
    db.group_commit = GroupCommit(db, lock)
    if subject_key is not None:
        db.subject_key = SubjectKey(subject_key)
    elif scheme == "sqlite" and db.database != ":memory:":
        db.subject_key = SubjectKey.from_file(key_file(db.database))
    elif scheme == "sqlite":
        db.subject_key = SubjectKey(os.urandom(32))
    else:
        raise ValueError("a PostgreSQL store needs a subject key (REDACT_SUBJECT_KEY)")
    database.initialize(db)
    return db


class PreparedQuery:
    """A peewee query whose SQL is generated once per kind of database and shape, then
    run with new values.

    Generating SQL costs far more CPU than running it on a few indexed rows, and in a
    batch it would be spent while holding the write lock. `build(mark, shape)` returns the
    query for a shape (e.g. a batch size), using `mark(*name)` in place of each value; the
    marks are found among the generated parameters, and `execute(shape, values)` puts the
    values in their places, already converted for the database (no field converts them):
    `mark("now")` takes `values["now"]`, `mark("id", i)` takes `values["id"][i]` and
    `mark("rows", i, j)` takes `values["rows"][i][j]`.
    """

    def __init__(self, build: Callable[[Callable[..., str], Any], peewee.Query]):
        self._build = build
        self._compiled: dict[tuple[type, Any], tuple[str, list]] = {}

    def execute(self, shape: Any, values: dict):
        """Run on the current database; returns the cursor."""
        db = database.obj
        # The SQL depends on the dialect (quoting, placeholders), i.e. the database's class.
        compiled = self._compiled.get((type(db), shape))
        if compiled is None:
            compiled = self._compiled[(type(db), shape)] = self._compile(shape)
        sql, segments = compiled
        params: list = []
        for kind, name, extra in segments:
            if kind == "constant":
                params.append(extra)
            elif kind == "value":
                params.append(values[name])
            elif kind == "item":
                params.append(values[name][extra])
            elif kind == "items":  # the whole sequence values[name], in order
                params.extend(values[name])
            elif kind == "rows":  # every row of values[name], row by row
                params.extend(itertools.chain.from_iterable(values[name]))
            else:  # "cell": one value of a table
                params.append(values[name[0]][name[1]][name[2]])
        return db.execute_sql(sql, params)

    def _compile(self, shape: Any) -> tuple[str, list]:
        marks: dict[str, tuple] = {}

        def mark(*name) -> peewee.Value:
            marker = f"@@param{len(marks)}@@"
            marks[marker] = name
            return peewee.Value(marker, converter=False)  # no field converts the marker

        sql, params = self._build(mark, shape).sql()
        slots = [(marks.get(p) if isinstance(p, str) else None, p) for p in params]
        if len({name for name, _ in slots if name}) != len(marks):
            raise ValueError("a marked value was converted; pass it pre-converted")
        return sql, _segments(slots)


def _segments(slots: list[tuple]) -> list[tuple]:
    """The parameters as runs to copy: a constant, one value, or a whole sequence or
    table of values when its marks appear in order (as a batch's VALUES or IN list)."""
    segments: list[tuple] = []
    index = 0
    while index < len(slots):
        name, constant = slots[index]
        if name is None:
            segments.append(("constant", None, constant))
            index += 1
        elif len(name) == 1:
            segments.append(("value", name[0], None))
            index += 1
        elif len(name) == 2:
            run = 0
            while index + run < len(slots) and slots[index + run][0] == (name[0], run):
                run += 1
            if name[1] == 0 and run > 1:
                segments.append(("items", name[0], run))
                index += run
            else:
                segments.append(("item", name[0], name[1]))
                index += 1
        elif name[1:] == (0, 0):
            width = 0
            while index + width < len(slots) and slots[index + width][0] == (name[0], 0, width):
                width += 1
            rows = 0
            while all(
                index + rows * width + c < len(slots)
                and slots[index + rows * width + c][0] == (name[0], rows, c)
                for c in range(width)
            ):
                rows += 1
            segments.append(("rows", name[0], rows * width))
            index += rows * width
        else:
            segments.append(("cell", name, None))
            index += 1
    return segments


WRITER_IDLE_SECONDS = 1.0


class GroupCommit:
    """Runs the writes of every caller in the process in shared transactions, on one
    writer thread.

    Callers queue `(batch_fn, item)`: a coroutine awaits `run_async`, a thread calls `run`.
    The writer waits for a first unit, takes the write lock (which another process may
    hold), then takes everything queued by then, calls each `batch_fn` once with its items
    inside one transaction, commits, and only then completes the callers' futures (an
    event loop's in one callback per batch). Whatever arrives meanwhile forms the next
    batch, so batches grow with the load, and the event loop never waits for the
    database.

    `batch_fn(items)` returns one outcome per item; an outcome that is an exception is
    raised to that item's caller (it must not have written anything for that item). An
    exception raised by `batch_fn` rolls the whole batch back and reaches every caller.
    """

    def __init__(self, db: peewee.Database, process_lock: ProcessWriteLock | None = None):
        self._db = db
        self._process_lock = process_lock or contextlib.nullcontext()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._start = threading.Lock()
        self._writer_pid: int | None = None

    def run(self, batch_fn: Callable[[list], list], item: Any) -> Any:
        """`item`'s outcome, once the transaction holding it has committed (blocks).

        The writer commits on a connection of its own: the calling thread must hold no
        transaction and no unfinished read cursor (on SQLite either holds a lock the
        commit waits for)."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._submit((batch_fn, item, future, None))
        return future.result()

    async def run_async(self, batch_fn: Callable[[list], list], item: Any) -> Any:
        """`item`'s outcome, once the transaction holding it has committed; the event loop
        serves other requests meanwhile."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._submit((batch_fn, item, future, loop))
        return await future

    def _submit(self, unit: tuple) -> None:
        if self._writer_pid != os.getpid():  # first use, or first use after a fork
            with self._start:
                if self._writer_pid != os.getpid():
                    if self._writer_pid is not None:  # the parent's queue is not ours
                        self._queue = queue.SimpleQueue()
                    threading.Thread(
                        target=self._write_forever, name="group-commit", daemon=True
                    ).start()
                    self._writer_pid = os.getpid()
        self._queue.put(unit)

    def _write_forever(self) -> None:
        units = self._queue
        while True:
            try:
                batch = [units.get(timeout=WRITER_IDLE_SECONDS)]
            except queue.Empty:
                # Idle: the connection goes back to the pool (the writer keeps it while
                # busy: PostgreSQL's pool checks a connection with a round trip each time
                # it lends it).
                self._close_quietly()
                continue
            try:
                with self._process_lock:
                    # What arrived while another process held the lock joins this batch.
                    _take_waiting(units, batch)
                    outcomes = self._execute(batch)
            except BaseException as exc:  # the lock itself failed
                _take_waiting(units, batch)
                outcomes = [exc] * len(batch)
            try:
                _deliver(batch, outcomes)
            except Exception:  # the writer must live on: every later caller waits on it
                log.exception("group commit: delivering a batch's outcomes failed")

    def _close_quietly(self) -> None:
        try:
            self._db.close()
        except Exception:
            log.warning("group commit: closing the writer's connection failed", exc_info=True)

    def _execute(self, batch: list[tuple]) -> list:
        outcomes: list = [None] * len(batch)
        groups: dict[Callable, list[int]] = {}
        for index, (batch_fn, *_) in enumerate(batch):
            groups.setdefault(batch_fn, []).append(index)
        try:
            if self._db.is_closed():
                self._db.connect()
            with self._db.atomic():
                for batch_fn, indexes in groups.items():
                    results = batch_fn([batch[i][1] for i in indexes])
                    for index, outcome in zip(indexes, results, strict=True):
                        outcomes[index] = outcome
        except BaseException as exc:  # rolled back: nothing of the batch was written
            outcomes = [exc] * len(batch)
            # Not kept: the failure may have broken it (a database restart); the pool
            # checks it before lending it again.
            self._close_quietly()
        return outcomes


def _take_waiting(units: queue.SimpleQueue, batch: list) -> None:
    """Add every unit waiting in `units` to `batch`."""
    while True:
        try:
            batch.append(units.get_nowait())
        except queue.Empty:
            return


def _deliver(batch: list[tuple], outcomes: list) -> None:
    """Complete the callers' futures: a thread's at once, an event loop's in one call per
    loop (each `call_soon_threadsafe` wakes the loop)."""
    by_loop: dict[asyncio.AbstractEventLoop, list] = {}
    for (_, _, future, loop), outcome in zip(batch, outcomes, strict=True):
        if loop is None:
            _settle(future, outcome)
        else:
            by_loop.setdefault(loop, []).append((future, outcome))
    for loop, settled in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits for these
            loop.call_soon_threadsafe(_settle_all, settled)


def _settle_all(settled: list) -> None:
    for future, outcome in settled:
        _settle(future, outcome)


def _settle(future, outcome) -> None:
    if future.done():  # an asyncio caller that went away (cancelled)
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


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
