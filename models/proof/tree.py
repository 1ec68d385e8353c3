"""The erasure log's Merkle tree (RFC 9162, models/proof/merkle.py) over each account's
entries (models/proof/entries.py), and the proofs it answers.

The tree is built by `integrate`, off the redaction's path: by the tree-head task every
minute, and before any tree head or proof is made. It folds the new leaves into the right
edge kept in `log_state` (the roots of the complete subtrees the size decomposes into,
which give the root without reading entries) and keeps every complete, aligned subtree of
256, 65,536, ... leaves in `log_node`, so any proof reads O(log n) small ranges.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

import peewee

from models.errors import InvalidLogRange
from models.proof import merkle
from models.proof.entries import Entry, LogChunk, LogState, chunks, entries, log_size
from models.store.base import BaseModel, database, is_postgres
from models.store.prepared import PreparedQuery

# Interior nodes are kept every STRIDE levels: a proof computes the levels between from
# at most 2**(STRIDE-1) stored hashes.
STRIDE = 8


class LogNode(BaseModel):
    """The root of a complete subtree of 2**level leaves, the `position`-th of its level."""

    api_key = peewee.CharField(max_length=64)
    level = peewee.SmallIntegerField()
    position = peewee.BigIntegerField()
    hash = peewee.BlobField()

    class Meta:
        table_name = "log_node"
        primary_key = peewee.CompositeKey("api_key", "level", "position")


def hashes(blob: bytes) -> list[bytes]:
    return [bytes(blob[i : i + 32]) for i in range(0, len(blob), 32)]


def extend(
    frontier: list[bytes], size: int, leaves: Iterable[bytes]
) -> tuple[list[bytes], list[tuple[int, int, bytes]]]:
    """The right edge after appending `leaves` to a tree of `size`, and the kept nodes
    (level, position, hash) completed on the way."""
    nodes = []
    sha256 = hashlib.sha256  # merkle.node_hash, inlined: it runs for every leaf
    for leaf in leaves:
        frontier.append(leaf)
        size += 1
        level = 0
        while not size >> level & 1:  # each trailing zero of the new size is a merge
            right = frontier.pop()
            frontier[-1] = sha256(b"\x01" + frontier[-1] + right).digest()
            level += 1
            if level % STRIDE == 0:
                nodes.append((level, (size >> level) - 1, frontier[-1]))
    return frontier, nodes


def root_of_frontier(frontier: Sequence[bytes]) -> bytes:
    """MTH of the tree whose right edge is `frontier`."""
    if not frontier:
        return merkle.EMPTY_ROOT
    root = frontier[-1]
    for digest in reversed(frontier[:-1]):
        root = merkle.node_hash(digest, root)
    return root


INTEGRATE_STEP = 100_000  # entries integrated per transaction, at most


def integrate(api_key: str, upto: int | None = None) -> int:
    """Bring the account's tree up to `upto` entries (default: all appended): their leaf
    hashes, as recorded at append, folded into the right edge, and the subtrees they
    complete kept. Appending only records entries and leaves; the tree is built here,
    off the redaction's path, by the tree-head task every minute and before any head or
    proof is made. Returns the size of the tree."""
    while True:
        with database.atomic():
            state = _STATE_FOR_TREE.execute(is_postgres(), {"api_key": api_key}).fetchone()
            if state is None:
                return 0
            size, integrated, frontier = state[0], state[1], hashes(bytes(state[2]))
            target = size if upto is None else min(upto, size)
            if integrated >= target:
                return integrated
            end = min(target, integrated + INTEGRATE_STEP)
            leaves = StoredTree(api_key).leaves(integrated, end)
            if len(leaves) != end - integrated:
                raise LookupError(f"the log of {api_key} is missing entries before {end}")
            frontier, nodes = extend(frontier, integrated, leaves)
            for start in range(0, len(nodes), 500):
                LogNode.insert_many(
                    [(api_key, *node) for node in nodes[start : start + 500]],
                    fields=(LogNode.api_key, LogNode.level, LogNode.position, LogNode.hash),
                ).execute()
            LogState.update(integrated=end, frontier=b"".join(frontier)).where(
                LogState.api_key == api_key
            ).execute()


def _build_state_for_tree(mark, lock: bool):
    query = LogState.select(LogState.size, LogState.integrated, LogState.frontier).where(
        LogState.api_key == mark("api_key")
    )
    return query.for_update() if lock else query


_STATE_FOR_TREE = PreparedQuery(_build_state_for_tree)


class StoredTree:
    """`subtree(start, end)` for an account's tree, from its stored leaves and nodes."""

    def __init__(self, api_key: str):
        self.api_key = api_key
        self._cache: dict[tuple[int, int], bytes] = {}

    def subtree(self, start: int, end: int) -> bytes:
        cached = self._cache.get((start, end))
        if cached is not None:
            return cached
        level = (end - start).bit_length() - 1
        base = level - level % STRIDE
        items = self._level(base, start >> base, end >> base)
        while len(items) > 1:
            items = [merkle.node_hash(items[i], items[i + 1]) for i in range(0, len(items), 2)]
        self._cache[(start, end)] = items[0]
        return items[0]

    def leaves(self, first: int, end: int) -> list[bytes]:
        """The leaf hashes of entries [first, end), as recorded when they were appended."""
        leaves = b"".join(
            bytes(c.leaves)[32 * max(first - c.position, 0) : 32 * (end - c.position)]
            for c in chunks(self.api_key, first, end, LogChunk.position, LogChunk.leaves)
        )
        return [leaves[i : i + 32] for i in range(0, len(leaves), 32)]

    def _level(self, level: int, first: int, end: int) -> list[bytes]:
        rows: Any
        if level == 0:
            rows = [(leaf,) for leaf in self.leaves(first, end)]
        else:
            rows = (
                LogNode.select(LogNode.hash)
                .where(
                    (LogNode.api_key == self.api_key)
                    & (LogNode.level == level)
                    & (LogNode.position >= first)
                    & (LogNode.position < end)
                )
                .order_by(LogNode.position)
                .tuples()
            )
        hashes = [bytes(row[0]) for row in rows]
        if len(hashes) != end - first:
            raise LookupError(f"the log of {self.api_key} is missing hashes at level {level}")
        return hashes


def checked_entries(api_key: str, start: int, end: int) -> list[Entry]:
    """`entries` for a client: InvalidLogRange if `start` is beyond the log or after
    `end`."""
    _within(api_key, start, log_size(api_key) - 1)
    if end < start:
        raise InvalidLogRange(f"end {end} is before start {start}")
    return entries(api_key, start, end)


def checked_inclusion(api_key: str, index: int, tree_size: int) -> tuple[bytes, list[bytes]]:
    """The leaf hash of entry `index` and its path in the tree of `tree_size`, for a
    client: InvalidLogRange unless 0 <= index < tree_size <= the log's size."""
    _within(api_key, tree_size, log_size(api_key))
    if index >= tree_size:
        raise InvalidLogRange(f"index {index} is not within a tree of {tree_size}")
    return entries(api_key, index, index)[0].leaf, inclusion_proof(api_key, index, tree_size)


def checked_consistency(api_key: str, first: int, second: int) -> list[bytes]:
    """`consistency_proof` for a client: InvalidLogRange unless 0 < first <= second <= the
    log's size."""
    _within(api_key, second, log_size(api_key))
    if first > second:
        raise InvalidLogRange(f"first {first} is larger than second {second}")
    return consistency_proof(api_key, first, second)


def _within(api_key: str, position: int, last: int) -> None:
    if position > last:
        raise InvalidLogRange(f"{position} is beyond the account's log ({last} at most)")


def inclusion_proof(api_key: str, position: int, tree_size: int) -> list[bytes]:
    integrate(api_key, tree_size)
    return merkle.inclusion_path(StoredTree(api_key).subtree, position, tree_size)


def consistency_proof(api_key: str, first: int, second: int) -> list[bytes]:
    integrate(api_key, second)
    return merkle.consistency_path(StoredTree(api_key).subtree, first, second)
