"""The erasure log's signed tree heads: an account's tree (models/proof/tree.py) of so many
entries has this root, as of this time, signed by the store's key.
"""

from __future__ import annotations

import contextlib
import datetime
import json
from collections.abc import Iterator
from typing import Any

import peewee

from models.proof.entries import LogChunk, LogState, b64, entry, log_size, timestamp
from models.proof.signing import publish
from models.proof.tree import LogNode, hashes, integrate, root_of_frontier
from models.store.base import BaseModel, UTCDateTimeField, database, is_postgres
from models.store.keys import SigningKey
from models.store.state import SQLITE_PRAGMAS

HEAD_TYPE = "redact-tree-head+jws"


class TreeHead(BaseModel):
    """A signed tree head: the account's tree of `tree_size` entries has root `root`,
    as of `timestamp`, signed (`token`, a compact JWS) by key `kid`."""

    api_key = peewee.CharField(max_length=64)
    tree_size = peewee.BigIntegerField()
    root = peewee.BlobField()
    timestamp = UTCDateTimeField()
    kid = peewee.CharField(max_length=64)
    token = peewee.TextField()

    class Meta:
        table_name = "tree_head"
        primary_key = peewee.CompositeKey("api_key", "tree_size")


# Every table of the erasure log, entries to heads.
LOG_MODELS = [LogState, LogChunk, LogNode, TreeHead]


def head_document(head: TreeHead) -> dict:
    """What a tree head's signature covers (its JWS payload)."""
    return {
        "account": head.api_key,
        "tree_size": head.tree_size,
        "root_hash": b64(bytes(head.root)),
        "timestamp": timestamp(head.timestamp),
        "key_id": head.kid,
    }


def latest_head(api_key: str) -> TreeHead | None:
    return (
        TreeHead.select()
        .where(TreeHead.api_key == api_key)
        .order_by(TreeHead.tree_size.desc())
        .first()
    )


class LogBusy(Exception):
    """A writer holds the log (a job's batch, or an SQLite commit): it was not waited for."""


INTEGRATE_ON_REQUEST = 10_000
"""Entries a head signed on request integrates, at most (~15 ms; the worker's minute task
or the next requests integrate the rest)."""

_KNOWN: dict[tuple[str, str], TreeHead] = {}
"""The newest head this process signed or read, by (SQLite file, account): the answer
while a commit keeps readers out of the file (a rollback journal does, for its length)."""


def signed_head(
    api_key: str, key: SigningKey, now: datetime.datetime, *, wait: bool = True
) -> TreeHead:
    """The account's newest tree head, signing one now if the log has grown since.

    Signing takes the log as appends do (its `log_state` row, FOR UPDATE; on SQLite the
    file's one writer), which a job holds for each batch (up to a second), and on SQLite
    even reading waits while a batch commits. With `wait=False` (a tree-head request) it
    waits for neither: it takes the log only if it is free at once, and signs then of at
    most INTEGRATE_ON_REQUEST more entries; otherwise it answers the newest head already
    signed (read from the database, or on SQLite, if even reading must wait, the newest
    this process knows). A head is of committed entries only, so it holds whatever the
    writer commits next."""
    if wait:
        return _remember(_newest_or_signed(api_key, key, now, None))
    latest: list[TreeHead] = []
    try:
        with _at_once():
            return _remember(_newest_or_signed(api_key, key, now, INTEGRATE_ON_REQUEST, latest))
    except LogBusy:
        known = latest[0] if latest else _KNOWN.get(_known_key(api_key))
        if known is not None:
            return known
    # Nothing signed yet: a head of the tree as last integrated and committed, not kept
    # (keeping it would wait for the writer).
    return _head_of(api_key, LogState.get_or_none(LogState.api_key == api_key), key, now)


def _newest_or_signed(
    api_key: str,
    key: SigningKey,
    now: datetime.datetime,
    most: int | None,
    seen: list[TreeHead] | None = None,
) -> TreeHead:
    latest = latest_head(api_key)
    if latest is not None:
        if seen is not None:
            seen.append(latest)
        if latest.tree_size >= log_size(api_key):
            return latest
    if most is None:  # in steps, each a transaction of its own
        integrate(api_key)
    with database.atomic():  # on SQLite, BEGIN IMMEDIATE: the write lock
        if most is not None and is_postgres():
            locked = LogState.select(LogState.size).where(LogState.api_key == api_key)
            if not list(locked.for_update(nowait=True).tuples()):
                most = 0  # no log yet (a first append may be making it: not waited for)
        return _sign(api_key, key, now, most)


@contextlib.contextmanager
def _at_once() -> Iterator[None]:
    """Statements of the block that would wait for a lock raise LogBusy instead: a row
    lock (PostgreSQL's NOWAIT) or, on SQLite, any lock of the file (no busy wait)."""
    sqlite = not is_postgres()
    if sqlite:
        database.execute_sql("PRAGMA busy_timeout = 0")
    try:
        yield
    except peewee.OperationalError as exc:
        cause = exc.__cause__ or exc.__context__  # the driver's own
        if getattr(cause, "pgcode", None) == "55P03" or "database is locked" in str(exc):
            raise LogBusy() from None
        raise
    finally:
        if sqlite:
            database.execute_sql(f"PRAGMA busy_timeout = {SQLITE_PRAGMAS['busy_timeout']}")


def _known_key(api_key: str) -> tuple[str, str]:
    return (str(database.obj.database), api_key)


def _remember(head: TreeHead) -> TreeHead:
    known = _KNOWN.get(_known_key(head.api_key))
    if not is_postgres() and (known is None or known.tree_size <= head.tree_size):
        _KNOWN[_known_key(head.api_key)] = head
    return head


def _sign(api_key: str, key: SigningKey, now: datetime.datetime, most: int | None) -> TreeHead:
    """Sign and keep a head of the account's tree as integrated (after integrating up to
    `most` more entries), in the caller's transaction holding the log."""
    state = LogState.get_or_none(LogState.api_key == api_key)
    if most and state is not None:
        integrate(api_key, state.integrated + most)
    state = LogState.get_or_none(LogState.api_key == api_key)
    head = _head_of(api_key, state, key, now)
    publish(key, now)
    TreeHead.insert(
        api_key=api_key,
        tree_size=head.tree_size,
        root=head.root,
        timestamp=now,
        kid=key.kid,
        token=head.token,
    ).on_conflict_ignore().execute()  # another process may have signed this size
    if state is not None and most != 0:  # 0: its row is not held (it was not there)
        LogState.update(signed_size=head.tree_size).where(
            (LogState.api_key == api_key) & (LogState.signed_size < head.tree_size)
        ).execute()
    return TreeHead.get((TreeHead.api_key == api_key) & (TreeHead.tree_size == head.tree_size))


def _head_of(api_key: str, state: Any, key: SigningKey, now: datetime.datetime) -> TreeHead:
    """A head of the tree `state` has integrated (appends since wait for the next), signed."""
    size, frontier = (state.integrated, hashes(bytes(state.frontier))) if state else (0, [])
    head = TreeHead(
        api_key=api_key, tree_size=size, root=root_of_frontier(frontier), timestamp=now, kid=key.kid
    )
    head.token = key.sign(head_document(head), HEAD_TYPE)
    return head


def sign_grown_logs(key: SigningKey, now: datetime.datetime) -> int:
    """Sign a tree head for every log that grew since its last one (the worker runs this
    every minute); how many were signed."""
    grown = [
        row.api_key
        for row in LogState.select(LogState.api_key).where(LogState.size > LogState.signed_size)
    ]
    for api_key in grown:
        signed_head(api_key, key, now)
    return len(grown)


def unsigned_since() -> datetime.datetime | None:
    """When the oldest erasure-log entry that no signed tree head covers yet was appended,
    over every account's log; None when each log's newest head covers it whole. The worker
    signs every minute for each log that grew, so while it runs (with a signing key) this
    is never much more than a minute ago."""
    oldest = None
    grown = LogState.select(LogState.api_key, LogState.signed_size).where(
        (LogState.size > LogState.signed_size) & (LogState.size > 0)
    )
    for state in grown:
        first = entry(state.api_key, max(state.signed_size, 0))
        if first is not None:
            at = datetime.datetime.fromisoformat(json.loads(first.body)["at"])
            oldest = at if oldest is None else min(oldest, at)
    return oldest


def heads(api_key: str) -> Iterator[TreeHead]:
    return iter(TreeHead.select().where(TreeHead.api_key == api_key).order_by(TreeHead.tree_size))
