"""The erasure log's entries: per account, every change to what the store holds about
people, appended in the change's transaction and read back. The Merkle tree over them is
models/proof/tree.py; its signed heads, models/proof/heads.py.

An entry is a canonical JSON document (models/store/keys.canonical) holding no personal
data: the account, its position (`index`), `kind`, the time (`at`) and ids, products, types,
field names, sources, job and trace ids. Its leaf hash is HASH(0x00 || the document's
UTF-8 bytes). Kinds:

- `redaction`: one record scrubbed (source api, job, retention or policy); one written
  after the fact by `redact receipts backfill` for a record redacted before the log
  existed says so (`backfilled`: true, models/erasure/backfill.py);
- `hold.created`, `hold.released`, `policy.changed`: what models/erasure/audit.record_event
  records, without the hold's reason or the operator's login;
- `job.finished`: a job's final status, counts, and the log ranges of its redactions;
- `maintenance`: PostgreSQL's VACUUM completed erasure of every redaction before
  `erased_before` (models/worker/maintenance.py).

Appending happens inside the caller's transaction, so an entry exists exactly when its
change committed: the entry and its leaf hash, a batch to a `log_chunk` row. Each
account's `log_state` row counts the entries and serialises appends (SELECT ... FOR
UPDATE on PostgreSQL; SQLite has one writer).
"""

from __future__ import annotations

import base64
import datetime
import json
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import peewee

from models.proof import merkle
from models.store.base import BaseModel, is_postgres
from models.store.keys import canonical
from models.store.prepared import PreparedQuery, Statement, run_together

MAX_ENTRIES = 1000  # per GET /log/entries
CHUNK = 500  # entries per log_chunk row, at most


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


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def timestamp(moment: datetime.datetime) -> str:
    """A log's time: ISO 8601 in UTC to the microsecond."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- appending ---


def append(
    entries: Sequence[tuple[str, str, dict]],
    now: datetime.datetime,
    writes: list[Statement] | None = None,
) -> list[int]:
    """Append entries (account, kind, fields) in the caller's transaction; their
    positions in their accounts' logs, in the order given. With `writes`, the statements
    that write them are added to it, for the caller to run (`run_together`) before its
    transaction commits."""
    pending: list[Statement] = [] if writes is None else writes
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
            if kind == "redaction" and "backfilled" not in fields:
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
            chunk_insert = _INSERT_CHUNK.statement(
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
            pending.append(chunk_insert)
            first = last
        pending.append(_UPDATE_SIZE.statement(None, {"size": size, "api_key": api_key}))
    if writes is None:
        run_together(pending)
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
            f',"job":{_optional(fields["job"])},"key":',
            ',"kind":"redaction","record":{"id":',
            f',"product":{_string(record["product"])},"type":{_optional(record["type"])}}},'
            f'"source":{_string(fields["source"])},"trace_id":{_string(fields["trace_id"])}}}',
        )
    key = _optional(fields.get("key"))
    return f"{parts[0]}{index}{parts[1]}{key}{parts[2]}{_string(record['id'])}{parts[3]}"


def lock_log(api_key: str) -> int:
    """Hold the account's log for the caller's transaction (as appending does: writers of
    it wait for the transaction); its size."""
    return _locked_state(api_key).size


def _locked_state(api_key: str) -> Any:
    row = _STATE.execute(is_postgres(), {"api_key": api_key}).fetchone()
    if row is None:
        LogState.insert(api_key=api_key).on_conflict_ignore().execute()
        row = _STATE.execute(is_postgres(), {"api_key": api_key}).fetchone()
    return LogState(api_key=api_key, size=row[0])


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
