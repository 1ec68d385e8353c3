"""Group commit: the writes of every caller in a process share transactions, on one writer
thread (`GroupCommit`); processes writing one SQLite file take turns through a lock file
(`ProcessWriteLock`). Each batch is reported to an observer (`Commit`: its size, how long
it waited for the lock and held it, the pages it wrote), which the service turns into
metrics (app/metrics.py) and bench/commit.py into its table.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import peewee

from models.store.batches import (
    FOLLOWING_AT_MOST,
    FOLLOWING_SIZE,
    STOP,
    Commit,
    Written,
    deliver,
    preparable,
    prepare,
    take_waiting,
    unheard,
)
from models.store.journal import JournalPages
from models.store.process_lock import ProcessWriteLock

logger = logging.getLogger("redact.store.group_commit")


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
    A `batch_fn` that has made its outcomes durable by other means (the Redact API's: its
    keys destroyed, its intents kept in the key store) says so with `tell_before_commit`:
    its callers hear them as soon as it returns, before the transaction commits; a
    `batch_fn` learns how the transaction ended through `after_transaction`.

    A `batch_fn` may offer `batch_fn.prepare(items)`: it does the batch's reads, starts
    what can run beside a commit (the Redact API's: checks the records, begins destroying
    their keys) and returns what finishes the batch. When a batch of at most
    FOLLOWING_SIZE such units is about to commit and a few more wait, the writer takes
    them and prepares them in this transaction, so that their keys are destroyed while it
    commits; they commit next, in their own transaction, under the same hold of the
    process lock (FOLLOWING_AT_MOST in a row). If this commit fails, they start over.
    Only with a process lock (SQLite): what the checks read must not change between the
    two transactions, and a write outside the group commit that could change it (a legal
    hold) takes that lock too (`Store.writers_excluded`). PostgreSQL's writers share no
    such lock (a hold's account lock lasts one transaction): there nothing is prepared.
    """

    def __init__(
        self,
        db: peewee.Database,
        process_lock: ProcessWriteLock | None = None,
        journal_pages: JournalPages | None = None,
        transaction: bool = True,
    ):
        """`journal_pages()` counts the pages the open transaction changed
        (models/store/journal.py), for each batch's `Commit.pages`; `observer`, set by
        whoever reports, is called with each `Commit` on the writer thread (it must be
        quick and must not raise). Without `transaction`, each batch runs outside one, and
        its `batch_fn` makes its writes atomic itself (a single statement is: it spares
        the round trips of BEGIN and COMMIT)."""
        self._db = db
        self._transaction = transaction
        self._process_lock = process_lock or contextlib.nullcontext()
        self._looks_ahead = process_lock is not None
        self._journal_pages = journal_pages
        self.observer: Callable[[Commit], None] | None = None
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._start = threading.Lock()
        self._writer: threading.Thread | None = None
        self._writer_pid: int | None = None
        self._after: list[Callable[[bool], None]] = []
        self._tell_now = False

    def after_transaction(self, callback: Callable[[bool], None]) -> None:
        """Call `callback(committed)` once the running batch's transaction has ended;
        only from a `batch_fn`, on the writer thread. It must be quick; what it raises is
        logged."""
        self._after.append(callback)

    def tell_before_commit(self) -> None:
        """Let the callers of the running `batch_fn` hear its outcomes as soon as it
        returns, before the transaction commits; only from a `batch_fn`, on the writer
        thread."""
        self._tell_now = True

    def run(self, batch_fn: Callable[[list], list], item: Any) -> Any:
        """`item`'s outcome, once the transaction holding it has committed (blocks).

        The writer commits on a connection of its own: the calling thread must hold no
        transaction and no unfinished read cursor (on SQLite either holds a lock the
        commit waits for)."""
        return self.submit(batch_fn, item).result()

    def submit(self, batch_fn: Callable[[list], list], item: Any) -> concurrent.futures.Future:
        """A future of `item`'s outcome, for a thread that works on meanwhile (as `run`,
        once the caller asks for the result)."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._submit((batch_fn, item, future, None))
        return future

    async def run_async(self, batch_fn: Callable[[list], list], item: Any) -> Any:
        """`item`'s outcome, once the transaction holding it has committed; the event loop
        serves other requests meanwhile."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._submit((batch_fn, item, future, loop))
        return await future

    def _submit(self, unit: tuple) -> None:
        # Under the lock: a unit queued while `close` runs would wait behind its stop for a
        # writer that no longer reads (an uncontended lock costs nothing next to a commit).
        with self._start:
            if self._writer_pid != os.getpid():  # first use, after a close or a fork
                if self._writer_pid is not None:  # the parent's queue is not ours
                    self._queue = queue.SimpleQueue()
                self._writer = threading.Thread(
                    target=self._write_until_closed,
                    args=(self._queue,),
                    name="group-commit",
                    daemon=True,
                )
                self._writer.start()
                self._writer_pid = os.getpid()
            self._queue.put(unit)

    def close(self) -> None:
        """Commit what is queued, then stop the writer thread and give back its
        connection, and close the process lock's file. A later write starts them again."""
        with self._start:
            writer, self._writer = self._writer, None
            if writer is not None and self._writer_pid == os.getpid():
                self._queue.put(STOP)
                writer.join()
            # Everything before the stop was committed; after a fork, what the queue holds
            # is the parent's.
            self._queue = queue.SimpleQueue()
            self._writer_pid = None
            if isinstance(self._process_lock, ProcessWriteLock):
                self._process_lock.close()

    def _write_until_closed(self, units: queue.SimpleQueue) -> None:
        closing = False
        while not closing:
            try:
                first = units.get(timeout=WRITER_IDLE_SECONDS)
            except queue.Empty:
                # Idle: the connection goes back to the pool (the writer keeps it while
                # busy: PostgreSQL's pool checks a connection with a round trip each time
                # it lends it).
                self._close_quietly()
                continue
            if first is STOP:
                break
            batch = [first]
            asked = time.perf_counter()
            taken = asked
            prepared = None  # what an earlier transaction prepared of `batch`
            heard: set[int] = set()  # told before the commit
            try:
                with self._process_lock:
                    taken = time.perf_counter()
                    # What arrived while another process held the lock joins this batch.
                    closing = take_waiting(units, batch)
                    for turn in range(FOLLOWING_AT_MOST + 1):
                        last = closing or turn == FOLLOWING_AT_MOST
                        ahead = None if last or not self._looks_ahead else units
                        written = self._execute(batch, heard, prepared, ahead)
                        closing = closing or written.closing  # a stop met looking ahead
                        if not written.following:
                            break
                        # The units taken ahead are written next, under this hold.
                        done = time.perf_counter()
                        self._finish(batch, written, heard, asked, taken, done)
                        batch, prepared = written.following, written.prepared
                        heard, asked, taken = set(), done, done
            except BaseException as exc:  # the lock itself failed
                closing = take_waiting(units, batch) or closing
                written = Written([exc] * len(batch), None, [], None)
            self._finish(batch, written, heard, asked, taken, time.perf_counter())
        self._close_quietly()

    def _finish(self, batch, written: Written, heard: set[int], asked, taken, done) -> None:
        """Report a batch's commit and tell its callers what they have not heard yet."""
        self._report(Commit(len(batch), taken - asked, done - taken, written.pages))
        try:
            outcomes = written.outcomes
            if heard:
                batch, outcomes = unheard(batch, outcomes, heard)
            deliver(batch, outcomes)
        except Exception:  # the writer must live on: every later caller waits on it
            logger.exception("group commit: delivering a batch's outcomes failed")

    def _close_quietly(self) -> None:
        try:
            self._db.close()
        except Exception:
            logger.warning("group commit: closing the writer's connection failed", exc_info=True)

    def _report(self, commit: Commit) -> None:
        observer = self.observer
        if observer is not None:
            try:
                observer(commit)
            except Exception:
                logger.warning("group commit: the observer failed", exc_info=True)

    def _execute(
        self,
        batch: list[tuple],
        heard: set[int],
        prepared: dict | None,
        units: queue.SimpleQueue | None,
    ) -> Written:
        """The batch's outcomes, and the pages its commit wrote; the indexes of the units
        told before the commit are added to `heard`. `prepared` holds what an earlier
        transaction prepared of this batch. With `units`, a few units waiting there when
        this batch is about to commit are taken as the following batch and prepared
        first (`prepare`)."""
        outcomes: list = [None] * len(batch)
        groups: dict[Callable, list[int]] = {}
        for index, (batch_fn, *_) in enumerate(batch):
            groups.setdefault(batch_fn, []).append(index)
        self._after = []
        committed = False
        following: list = []
        closing = False
        ready = None
        try:
            if self._db.is_closed():
                self._db.connect()
            pages = None
            with self._db.atomic() if self._transaction else contextlib.nullcontext():
                for batch_fn, indexes in groups.items():
                    self._tell_now = False
                    if prepared is not None and batch_fn in prepared:
                        results = prepared[batch_fn]()
                    else:
                        results = batch_fn([batch[i][1] for i in indexes])
                    for index, outcome in zip(indexes, results, strict=True):
                        outcomes[index] = outcome
                    if self._tell_now:
                        deliver([batch[i] for i in indexes], [outcomes[i] for i in indexes])
                        heard.update(indexes)
                if (
                    units is not None
                    and preparable(batch, FOLLOWING_SIZE)  # only its kind leads
                    and 0 < units.qsize() <= FOLLOWING_SIZE
                ):
                    closing = take_waiting(units, following)
                    # In a savepoint: a failure `prepare` survives must not have lost this
                    # transaction unseen (its commit would then write nothing).
                    with self._db.atomic():
                        ready = prepare(following, FOLLOWING_SIZE)
                if self._journal_pages is not None:  # before the commit empties it
                    pages = self._journal_pages()
            committed = True
        except BaseException as exc:  # rolled back: nothing of the batch was written
            # Not kept: the failure may have broken it (a database restart); the pool
            # checks it before lending it again.
            self._close_quietly()
            # What was prepared of the following batch read this one's writes: it is
            # done again from the start.
            return Written([exc] * len(batch), None, following, None, closing)
        finally:
            after, self._after = self._after, []
            for callback in after:
                try:
                    callback(committed)
                except Exception:
                    logger.exception("group commit: a callback after the transaction failed")
        return Written(outcomes, pages, following, ready, closing)
