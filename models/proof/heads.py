"""The erasure log's signed tree heads: an account's tree (models/proof/tree.py) of so many
entries has this root, as of this time, signed by the store's key.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator

import peewee

from models.proof.entries import LogChunk, LogState, b64, entry, log_size, timestamp
from models.proof.signing import publish
from models.proof.tree import LogNode, hashes, integrate, root_of_frontier
from models.store.base import BaseModel, UTCDateTimeField, database
from models.store.keys import SigningKey

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


def signed_head(api_key: str, key: SigningKey, now: datetime.datetime) -> TreeHead:
    """The account's newest tree head, signing one now if the log has grown since."""
    latest = latest_head(api_key)
    if latest is not None and latest.tree_size >= log_size(api_key):
        return latest
    integrate(api_key)
    with database.atomic():
        state = LogState.get_or_none(LogState.api_key == api_key)
        if state is not None:  # the tree as integrated (appends since wait for the next)
            size, frontier = state.integrated, hashes(bytes(state.frontier))
        else:
            size, frontier = 0, []
        head = TreeHead(
            api_key=api_key,
            tree_size=size,
            root=root_of_frontier(frontier),
            timestamp=now,
            kid=key.kid,
        )
        head.token = key.sign(head_document(head), HEAD_TYPE)
        publish(key, now)
        TreeHead.insert(
            api_key=api_key,
            tree_size=size,
            root=head.root,
            timestamp=now,
            kid=key.kid,
            token=head.token,
        ).on_conflict_ignore().execute()  # another process may have signed this size
        if state is not None:
            LogState.update(signed_size=size).where(
                (LogState.api_key == api_key) & (LogState.signed_size < size)
            ).execute()
    return TreeHead.get((TreeHead.api_key == api_key) & (TreeHead.tree_size == size))


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
