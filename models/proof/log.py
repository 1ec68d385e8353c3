"""The erasure log: per account, every change to what the store holds about people, as
an append-only RFC 9162 Merkle tree (models/proof/merkle.py) with signed tree heads.

An entry is a canonical JSON document (models/signing.canonical) holding no personal data:
the account, its position (`index`), `kind`, the time (`at`) and ids, products, types,
field names, sources, job and trace ids. Its leaf hash is HASH(0x00 || the document's
UTF-8 bytes). Kinds:

- `redaction`: one record scrubbed (source api, job, retention or policy);
- `hold.created`, `hold.released`, `policy.changed`: what models/audit.record_event
  records, without the hold's reason or the operator's login;
- `job.finished`: a job's final status, counts, and the log ranges of its redactions;
- `maintenance`: PostgreSQL's VACUUM completed erasure of every redaction before
  `erased_before` (models/worker/maintenance.py).

Appending happens inside the caller's transaction, so an entry exists exactly when its
change committed: the entry and its leaf hash, a batch to a `log_chunk` row. Each
account's `log_state` row counts the entries and serialises appends (SELECT ... FOR
UPDATE on PostgreSQL; SQLite has one writer). The tree itself is built by `integrate`,
off the redaction's path: by the tree-head task every minute, and before any tree head
or proof is made. It folds the new leaves into the right edge kept in `log_state` (the
roots of the complete subtrees the size decomposes into, which give the root without
reading entries) and keeps every complete, aligned subtree of 256, 65,536, ... leaves in
`log_node`, so any proof reads O(log n) small ranges.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import peewee

from models.errors import InvalidLogRange
from models.proof import merkle
from models.proof.signing import publish
from models.store.base import BaseModel, UTCDateTimeField, database
from models.store.keys import SigningKey, canonical
from models.store.prepared import PreparedQuery

# Interior nodes are kept every STRIDE levels: a proof computes the levels between from
# at most 2**(STRIDE-1) stored hashes.
STRIDE = 8
MAX_ENTRIES = 1000  # per GET /log/entries
CHUNK = 500  # entries per log_chunk row, at most

HEAD_TYPE = "redact-tree-head+jws"


class LogState(BaseModel):
    """An account's log: its size and the right edge of its tree."""

    api_key = peewee.CharField(max_length=64, primary_key=True)
    size = peewee.BigIntegerField(default=0)  # entries appended
    integrated = peewee.BigIntegerField(default=0)  # entries in the tree below
    frontier = peewee.BlobField(default=b"")  # its right edge: 32-byte roots, largest first
    signed_size = peewee.BigIntegerField(default=-1)  # the size of the newest tree head
    # PostgreSQL: entries before this are erased by maintenance (its own entry included).
    erased_before = peewee.BigIntegerField(default=0)

    class Meta:
        table_name = "log_state"


class LogChunk(BaseModel):
    """Consecutive entries of one kind appended together (at most CHUNK): their documents
    joined by newlines (canonical JSON holds none) and their leaf hashes, as appended,
    end to end. One row for a batch of redactions, not one per record: a job appends
    millions. On SQLite a table without rowids, keyed by (account, first position)
    alone (models/migrations.py)."""

    api_key = peewee.CharField(max_length=64)
    position = peewee.BigIntegerField()  # of its first entry
    count = peewee.IntegerField()
    kind = peewee.CharField(max_length=20)
    body = peewee.TextField()
    leaves = peewee.BlobField()

    class Meta:
        table_name = "log_chunk"
        primary_key = peewee.CompositeKey("api_key", "position")


class Entry(NamedTuple):
    """One entry as read back: its position, its document and its leaf hash."""

    position: int
    body: str
    leaf: bytes


class LogNode(BaseModel):
    """The root of a complete subtree of 2**level leaves, the `position`-th of its level."""

    api_key = peewee.CharField(max_length=64)
    level = peewee.SmallIntegerField()
    position = peewee.BigIntegerField()
    hash = peewee.BlobField()

    class Meta:
        table_name = "log_node"
        primary_key = peewee.CompositeKey("api_key", "level", "position")


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


LOG_MODELS = [LogState, LogChunk, LogNode, TreeHead]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def timestamp(moment: datetime.datetime) -> str:
    """A log's time: ISO 8601 in UTC to the microsecond."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- appending ---


def append(entries: Sequence[tuple[str, str, dict]], now: datetime.datetime) -> list[int]:
    """Append entries (account, kind, fields) in the caller's transaction; their
    positions in their accounts' logs, in the order given."""
    by_account: dict[str, list[int]] = {}
    for i, (api_key, _, _) in enumerate(entries):
        by_account.setdefault(api_key, []).append(i)
    positions = [0] * len(entries)
    at = timestamp(now)
    for api_key in sorted(by_account):  # one lock order for every writer (PostgreSQL)
        state = _locked_state(api_key)
        size = state.size
        rows = []
        templates: dict = {}
        for i in by_account[api_key]:
            _, kind, fields = entries[i]
            if kind == "redaction":
                body = _redaction_body(api_key, size, at, fields, templates)
            else:
                body = canonical(
                    {**fields, "account": api_key, "index": size, "kind": kind, "at": at}
                )
            rows.append((kind, body, merkle.leaf_hash(body.encode())))
            positions[i] = size
            size += 1
        first = 0
        while first < len(rows):  # chunks of one kind, at most CHUNK
            kind = rows[first][0]
            last = first + 1
            while last < len(rows) and last - first < CHUNK and rows[last][0] == kind:
                last += 1
            chunk = rows[first:last]
            _INSERT_CHUNK.execute(
                None,
                {
                    "api_key": api_key,
                    "position": state.size + first,
                    "count": len(chunk),
                    "kind": kind,
                    "body": "\n".join(row[1] for row in chunk),
                    "leaves": b"".join(row[2] for row in chunk),
                },
            )
            first = last
        _UPDATE_SIZE.execute(None, {"size": size, "api_key": api_key})
    return positions


_string = json.encoder.encode_basestring_ascii  # as canonical() quotes a string


def _optional(value: str | None) -> str:
    return "null" if value is None else _string(value)


def _redaction_body(api_key: str, index: int, at: str, fields: dict, cache: dict) -> str:
    """canonical() of a `redaction` entry, written out from a template per kind of
    redaction (a job's are all alike but for the record's id and the index): a job
    appends millions (tests/test_merkle.py checks it is canonical())."""
    record = fields["record"]
    kind: tuple = (record["product"], record["type"], tuple(fields["fields"]))
    kind += (fields["source"], fields["job"], fields["trace_id"])
    parts = cache.get(kind)
    if parts is None:
        parts = cache[kind] = (
            f'{{"account":{_string(api_key)},"at":"{at}",'
            f'"fields":[{",".join(map(_string, fields["fields"]))}],"index":',
            f',"job":{_optional(fields["job"])},"kind":"redaction","record":{{"id":',
            f',"product":{_string(record["product"])},"type":{_optional(record["type"])}}},'
            f'"source":{_string(fields["source"])},"trace_id":{_string(fields["trace_id"])}}}',
        )
    return f"{parts[0]}{index}{parts[1]}{_string(record['id'])}{parts[2]}"


def _locked_state(api_key: str) -> Any:
    row = _STATE.execute(_on_postgres(), {"api_key": api_key}).fetchone()
    if row is None:
        LogState.insert(api_key=api_key).on_conflict_ignore().execute()
        row = _STATE.execute(_on_postgres(), {"api_key": api_key}).fetchone()
    return LogState(api_key=api_key, size=row[0])


def _on_postgres() -> bool:
    return isinstance(database.obj, peewee.PostgresqlDatabase)


def _build_state(mark, lock: bool):
    query = LogState.select(LogState.size).where(LogState.api_key == mark("api_key"))
    return query.for_update() if lock else query


_STATE = PreparedQuery(_build_state)
_UPDATE_SIZE = PreparedQuery(
    lambda mark, _: LogState.update(size=mark("size")).where(LogState.api_key == mark("api_key"))
)
_INSERT_CHUNK = PreparedQuery(
    lambda mark, _: LogChunk.insert(
        api_key=mark("api_key"),
        position=mark("position"),
        count=mark("count"),
        kind=mark("kind"),
        body=mark("body"),
        leaves=mark("leaves"),
    )
)


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
            state = _STATE_FOR_TREE.execute(_on_postgres(), {"api_key": api_key}).fetchone()
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


# --- reading ---


def log_size(api_key: str) -> int:
    state = LogState.get_or_none(LogState.api_key == api_key)
    return state.size if state else 0


def entries(api_key: str, start: int, end: int) -> list[Entry]:
    """The account's entries at positions start..end (inclusive), at most MAX_ENTRIES."""
    end = min(end, start + MAX_ENTRIES - 1)
    return [e for chunk in chunks(api_key, start, end + 1) for e in _split(chunk, start, end + 1)]


def chunks(api_key: str, start: int, end: int, *columns, kind: str | None = None) -> list[Any]:
    """The rows holding the account's entries [start, end) (of `kind` only, if given), in
    order."""
    where = (
        (LogChunk.api_key == api_key)
        & (LogChunk.position > start - CHUNK)
        & (LogChunk.position < end)
    )
    if kind is not None:
        where &= LogChunk.kind == kind
    return list(LogChunk.select(*columns).where(where).order_by(LogChunk.position))


def _split(chunk: LogChunk, start: int, end: int) -> Iterator[Entry]:
    """The entries of a chunk at positions [start, end)."""
    bodies = chunk.body.split("\n")
    leaves = bytes(chunk.leaves)
    for i in range(max(start - chunk.position, 0), min(end - chunk.position, chunk.count)):
        yield Entry(chunk.position + i, bodies[i], leaves[32 * i : 32 * i + 32])


def entries_of_kind(api_key: str, kind: str, start: int, end: int) -> Iterator[Entry]:
    """The account's entries of `kind` at positions [start, end), in order."""
    for chunk in chunks(api_key, start, end, kind=kind):
        yield from _split(chunk, start, end)


def entry(api_key: str, position: int) -> Entry | None:
    found = entries(api_key, position, position)
    return found[0] if found else None


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


# --- tree heads ---


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


def heads(api_key: str) -> Iterator[TreeHead]:
    return iter(TreeHead.select().where(TreeHead.api_key == api_key).order_by(TreeHead.tree_size))
