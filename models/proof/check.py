"""`redact audit verify`: recompute every account's erasure log from its stored entries
and check it against what was recorded as it grew and against every signed tree head.

It names the first entry that was altered (its document no longer hashes to the leaf
recorded when it was appended), removed (a position missing, or the entries after it
one place down) or inserted (an entry where none was, or the entries after it one place
up, or beyond the log's recorded size). A change made consistently (documents, leaf
hashes and positions rewritten together) still breaks every signed tree head after it;
the check then names the range between the last head that holds and the first that does
not.
"""

from __future__ import annotations

import collections
import dataclasses
import json
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn

from joserfc.jwk import KeySet

from models.proof import merkle
from models.proof.entries import LogChunk, LogState, b64
from models.proof.heads import HEAD_TYPE, TreeHead
from models.proof.signing import verify
from models.proof.tree import LogNode, extend, hashes, root_of_frontier


@dataclasses.dataclass
class LogReport:
    account: str
    entries: int = 0
    heads: int = 0
    problem: str | None = None


def accounts() -> list[str]:
    """Every account with a log, or with entries or heads (a state row may be gone)."""
    names: set[str] = set()
    for model in (LogState, LogChunk, TreeHead):
        rows: list[Any] = list(model.select(model.api_key).distinct().tuples())
        names.update(row[0] for row in rows)
    return sorted(names)


def check_log(api_key: str, keys: KeySet, kept: Sequence[dict] = ()) -> LogReport:
    """The account's log recomputed and checked; `problem` names the first fault. `kept`
    are tree heads kept outside the database (their signed documents, any account's:
    this one's are checked like the stored ones)."""
    report = LogReport(api_key)
    state = LogState.get_or_none(LogState.api_key == api_key)
    heads = list(TreeHead.select().where(TreeHead.api_key == api_key).order_by(TreeHead.tree_size))
    report.heads = len(heads)
    tree = _Recomputed(api_key, state.size if state else 0, state.integrated if state else 0)
    try:
        for head in heads:
            tree.expect_head(head, keys)
        tree.keep([head for head in kept if head.get("account") == api_key])
        signed = state.signed_size if state else -1
        if signed >= 0 and all(head.tree_size != signed for head in heads):
            raise _Fault(f"the tree head of size {signed} was removed")
        tree.add_entries()
        if state is not None and root_of_frontier(hashes(bytes(state.frontier))) != tree.edge:
            raise _Fault("the log's recorded right edge does not match its entries")
    except _Fault as fault:
        report.problem = str(fault)
    report.entries = tree.size
    return report


class _Fault(Exception):
    def __init__(self, message: str, position: int = -1):
        super().__init__(message)
        self.position = position  # the entry it names, if any


class _Recomputed:
    """The account's tree rebuilt entry by entry, checking each signed head on the way."""

    def __init__(self, api_key: str, recorded: int, integrated: int):
        self.api_key = api_key
        self.recorded = recorded
        self.integrated = integrated
        self.edge = merkle.EMPTY_ROOT  # the root at the integrated size
        rows: list[Any] = list(
            LogNode.select(LogNode.level, LogNode.position, LogNode.hash)
            .where(LogNode.api_key == api_key)
            .tuples()
        )
        self.kept = {(level, index): bytes(node) for level, index, node in rows}
        self.frontier: list[bytes] = []
        self.size = 0
        # (size, root, timestamp) as signed, by size (the query's order)
        self.heads: collections.deque[tuple[int, str, str]] = collections.deque()
        self.verified = 0  # the size of the last head that held
        self.mismatch: tuple[int, str] | None = None  # the first head that did not

    def root(self) -> bytes:
        return root_of_frontier(self.frontier)

    def expect_head(self, head: TreeHead, keys: KeySet) -> None:
        try:
            header, document = verify(head.token, keys)
        except ValueError as exc:
            raise _Fault(f"the tree head of size {head.tree_size}: {exc}") from None
        if header.get("typ") != HEAD_TYPE or document.get("account") != self.api_key:
            raise _Fault(f"the tree head of size {head.tree_size} is not this log's")
        self.heads.append((document["tree_size"], document["root_hash"], document["timestamp"]))

    def keep(self, kept: list[dict]) -> None:
        """Add heads an auditor kept, in size order with the stored ones."""
        if kept:
            merged = list(self.heads)
            merged += [(h["tree_size"], h["root_hash"], h["timestamp"]) for h in kept]
            self.heads = collections.deque(sorted(merged))

    def add_entries(self) -> None:
        rows: Iterator[Any] = (
            LogChunk.select(LogChunk.position, LogChunk.count, LogChunk.body, LogChunk.leaves)
            .where(LogChunk.api_key == self.api_key)
            .order_by(LogChunk.position)
            .tuples()
            .iterator()
        )
        self._check_heads()
        for first, count, body, leaves in rows:
            bodies, leaves = body.split("\n"), bytes(leaves)
            if len(bodies) != count or len(leaves) != 32 * count:
                self._fail(_Fault(f"entries {first}..{first + count - 1} were altered", first))
            for i, text in enumerate(bodies):
                try:
                    self._add(first + i, text, leaves[32 * i : 32 * i + 32])
                except _Fault as fault:
                    self._fail(fault)
                self._check_heads()
        if self.mismatch is not None:
            raise _Fault(self.mismatch[1])
        if self.heads:
            size = self.heads[0][0]
            raise _Fault(f"entry {self.size} was removed (a tree head covers {size} entries)")
        if self.size < self.recorded:
            raise _Fault(f"entry {self.size} was removed (the log recorded {self.recorded})")

    def _fail(self, fault: _Fault) -> NoReturn:
        # A head that failed earlier wins unless this names an entry it covers: an
        # insertion shows as a mismatch first, and its place one entry later.
        if self.mismatch is not None and fault.position >= self.mismatch[0]:
            raise _Fault(self.mismatch[1]) from None
        raise fault

    def _add(self, position: int, body: str, leaf: bytes) -> None:
        if position > self.size:
            raise _Fault(f"entry {self.size} was removed", self.size)
        if position < self.size:
            raise _Fault(f"entry {position} was inserted (a second entry at its place)", position)
        if position >= self.recorded:
            raise _Fault(
                f"entry {position} was inserted (the log recorded {self.recorded})", position
            )
        try:
            document = json.loads(body)
            index, account = document["index"], document["account"]
        except (ValueError, KeyError, TypeError):
            raise _Fault(f"entry {position} was altered (it is no log entry)", position) from None
        if account != self.api_key:
            raise _Fault(f"entry {position} was inserted (it names another account)", position)
        if isinstance(index, int) and index < position:
            raise _Fault(
                f"entry {index} was inserted (the entries from it on are one place up)", index
            )
        if isinstance(index, int) and index > position:
            raise _Fault(
                f"entry {position} was removed (the entries after it are one place down)",
                position,
            )
        digest = merkle.leaf_hash(body.encode())
        if digest != leaf:
            raise _Fault(
                f"entry {position} was altered (it no longer hashes to its leaf)", position
            )
        self.frontier, nodes = extend(self.frontier, self.size, [digest])
        for level, index, node in nodes:
            if self.size < self.integrated and self.kept.get((level, index)) != node:
                raise _Fault(
                    f"the kept subtree of entries {index << level}..{((index + 1) << level) - 1}"
                    " does not match them (proofs through it would fail)",
                    index << level,
                )
        self.size += 1
        if self.size == self.integrated:
            self.edge = self.root()

    def _check_heads(self) -> None:
        """Check the heads of the current size against the recomputed root."""
        while self.heads and self.heads[0][0] <= self.size:
            size, root, timestamp = self.heads.popleft()
            if self.mismatch is not None:
                continue
            if b64(self.root()) != root:
                self.mismatch = (
                    size,
                    f"the tree head of size {size} signed at {timestamp} does not match: one of"
                    f" entries {self.verified}..{size - 1} was altered, removed or inserted",
                )
            else:
                self.verified = size
