"""The group commit's batches (models/store/group_commit.py): taking the units waiting in
its queue, preparing a batch ahead of its transaction, completing the callers' futures."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import typing

logger = logging.getLogger("redact.store.group_commit")


class Commit(typing.NamedTuple):
    """One batch the writer committed (or rolled back)."""

    size: int  # the callers' units in it
    waited: float  # seconds waiting for the process lock (another process's batch)
    held: float  # seconds from taking the lock to the end of the commit
    pages: int | None  # pages the commit wrote (SQLite's journal); None if unknown


STOP = None
"""Queued by `GroupCommit.close`: the writer finishes what was queued before it, then ends."""

FOLLOWING_SIZE = 4
"""The largest batch that is prepared under the commit before it, and that prepares the
next one: the answered-early batches of a light load (ANSWERED_EARLY_AT_MOST in
models/erasure/redaction.py). Under a heavy load the batches are larger and take turns
with other processes' at the lock as before."""

FOLLOWING_AT_MOST = 3
"""Batches that may follow the first under one hold of the process lock: another
process's writer waits for at most this many more commits."""


def take_waiting(units: queue.SimpleQueue, batch: list) -> bool:
    """Add every unit waiting in `units` to `batch`, up to a `close`; True if it met one."""
    while True:
        try:
            unit = units.get_nowait()
        except queue.Empty:
            return False
        if unit is STOP:
            return True
        batch.append(unit)


def unheard(batch: list[tuple], outcomes: list, heard: set[int]) -> tuple[list, list]:
    """The units of `batch` (and their outcomes) not told before the commit."""
    kept = [i for i in range(len(batch)) if i not in heard]
    return [batch[i] for i in kept], [outcomes[i] for i in kept]


def deliver(batch: list[tuple], outcomes: list) -> None:
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


class Written(typing.NamedTuple):
    """What `_execute` did with a batch, and the batch that follows it under one hold."""

    outcomes: list
    pages: int | None
    following: list  # units taken to be written next, before the lock is let go
    prepared: dict | None  # batch_fn: what finishes it, prepared for `following`
    closing: bool = False  # `following` ended at a `close`


def preparable(batch: list[tuple], most: int) -> bool:
    """Whether `batch` has at most `most` units and every `batch_fn` in it a `prepare`."""
    return len(batch) <= most and all(hasattr(unit[0], "prepare") for unit in batch)


def prepare(batch: list[tuple], most: int) -> dict | None:
    """For a `preparable` batch: each batch_fn's `prepare(items)`, what finishes it later.
    None for any other batch, or if a `prepare` fails (that batch then runs whole in its
    own transaction)."""
    if not preparable(batch, most):
        return None
    groups: dict[typing.Any, list] = {}  # batch_fn (with its `prepare`): items
    for batch_fn, item, *_ in batch:
        groups.setdefault(batch_fn, []).append(item)
    try:
        return {batch_fn: batch_fn.prepare(items) for batch_fn, items in groups.items()}
    except Exception:
        logger.exception("group commit: preparing a batch ahead failed")
        return None
