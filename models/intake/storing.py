"""Storing records all or nothing and idempotently, with redaction on arrival (`immediate`
policies: such a record is stored already scrubbed, audited and logged as any redaction,
models/erasure/scrub.py).

Storing goes through the group commit (models/store/group_commit.py), as redactions do: the
requests of the moment share a transaction, each in a savepoint of its own, so one
request's conflict leaves the others untouched.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import typing

from models.erasure.held import held_records
from models.erasure.policies import arrival_policies
from models.erasure.scrub import Redacted, audit_redactions, scrub, scrubbed_fields
from models.errors import RecordConflict, RedactionError
from models.intake.existing import COMPARED, stored_records
from models.records.transaction import Transaction
from models.store.prepared import PreparedQuery, statement_sizes
from models.store.state import current_store


@dataclasses.dataclass
class StoreCounts:
    received: int = 0
    stored: int = 0
    unchanged: int = 0
    redacted_on_arrival: int = 0
    # Data keys made for records that were not stored sealed (held already, or redacted on
    # arrival): the caller discards them once the batch has committed.
    unused_keys: list[str] = dataclasses.field(default_factory=list)
    # Records not stored because they carry a suppressed number: (where, fields).
    refused: list[tuple[int, list[str]]] = dataclasses.field(default_factory=list)

    def add(self, other: StoreCounts) -> None:
        for field in dataclasses.fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))


class StoreRequest(typing.NamedTuple):
    rows: list[dict]
    now: datetime.datetime
    trace_id: str


async def store_records_async(
    rows: list[dict], *, now: datetime.datetime, trace_id: str
) -> StoreCounts:
    """Store `rows` (from `parse_records`) in one transaction, all or nothing, and await
    its commit without holding a thread; RecordConflict for an id the account holds with
    other content (nothing is stored then)."""
    store = current_store()
    try:
        counts = await store.group_commit.run_async(store_batch, StoreRequest(rows, now, trace_id))
    except RedactionError:  # refused whole: nothing was stored, the keys protect nothing
        # (after a database error the commit may have happened: the keys stay)
        await asyncio.to_thread(
            store.keystore.discard, [row["key_id"] for row in rows if row.get("key_id")]
        )
        raise
    if counts.unused_keys:
        await asyncio.to_thread(store.keystore.discard, counts.unused_keys)
    return counts


def store_batch(requests: list[StoreRequest]) -> list:
    """Group-commit batch function: each request in a savepoint of its own."""
    outcomes: list = []
    for request in requests:
        try:
            with current_store().database.atomic():
                outcomes.append(store_in_transaction(request))
        except Exception as exc:  # this request's alone: its savepoint is rolled back
            outcomes.append(exc)
    return outcomes


def store_in_transaction(request: StoreRequest) -> StoreCounts:
    """`store_records_async` inside the caller's transaction (the load command holds a
    whole file in one)."""
    counts = StoreCounts(received=len(request.rows))
    fresh: dict[tuple[str, str], dict] = {}
    for row in request.rows:
        name = (row["id"], row["account"])
        earlier = fresh.get(name)
        if earlier is None:
            fresh[name] = row
        elif _content(earlier) == _content(row):
            counts.unchanged += 1
        else:
            raise RecordConflict(row["id"])

    immediate = arrival_policies(sorted({account for _, account in fresh}))
    held: set = set()
    if immediate:
        held = held_records(
            [
                (row["id"], row["account"], row["sender_key"], row["recipient_key"])
                for row in fresh.values()
                if (row["account"], row["product"]) in immediate
            ]
        )
    rows = {
        name: redacted_row(row, request.now)
        if (row["account"], row["product"]) in immediate and name not in held
        else row
        for name, row in fresh.items()
    }
    # Inserted unless the account holds the id already: those are compared afterwards
    # (rarely any), and one that differs undoes the lot (the caller's savepoint).
    # In key order: two processes storing overlapping records cannot deadlock (PostgreSQL).
    values = [_db_values(rows[name]) for name in sorted(rows)]
    inserted: set[tuple[str, str]] = set()
    start = 0
    for size in statement_sizes(len(values)):
        cursor = _INSERT.execute(size, {"rows": values[start : start + size]})
        inserted.update((transaction_id, account) for transaction_id, account in cursor)
        start += size
    existing = [name for name in fresh if name not in inserted]
    if existing:
        stored = stored_records(existing)
        for name in existing:
            if not _same(fresh[name], stored[name]):
                raise RecordConflict(name[0])
        counts.unchanged += len(existing)
    redacted = [
        fresh[name]
        for name, row in rows.items()
        if name in inserted and row.get("redacted_at") is not None
    ]
    if redacted:
        audit_redactions(
            [
                Redacted(
                    row["account"],
                    row["id"],
                    row["product"],
                    row["direction"],
                    scrubbed_fields(
                        row["product"], row["sender"], row["recipient"], row["body"], row["details"]
                    ),
                    "policy",
                    request.trace_id,
                    request.now,
                )
                for row in redacted
            ],
            request.now,
        )
    counts.stored = len(inserted)
    counts.redacted_on_arrival = len(redacted)
    sealed = {rows[name]["key_id"] for name in inserted if rows[name].get("key_id")}
    counts.unused_keys = [
        row["key_id"] for row in request.rows if row.get("key_id") and row["key_id"] not in sealed
    ]
    return counts


def redacted_row(row: dict, now: datetime.datetime) -> dict:
    """`row` as a redaction leaves it: personal fields REDACTED, numbers unindexed."""
    sender, recipient, body, details = scrub(
        row["product"], row["sender"], row["recipient"], row["body"], row["details"]
    )
    return {
        **row,
        "sender": sender,
        "recipient": recipient,
        "body": body,
        "details": details,
        "redacted_at": now,
        "sender_key": None,
        "recipient_key": None,
        "key_id": None,
        "sealed": None,
    }


def _content(row: dict) -> tuple:
    return tuple(row[field] for field in COMPARED)


def _same(offered: dict, stored: dict) -> bool:
    """Whether `offered` is the record `stored` holds: the same fields, or, once it is
    redacted, the same fields as a redaction leaves them."""
    if stored["redacted_at"] is not None:
        offered = redacted_row(offered, stored["redacted_at"])
    return _content(offered) == _content(stored)


_INSERTED = (
    "id",
    "account",
    "product",
    "direction",
    "created_at",
    "sender",
    "recipient",
    "body",
    "details",
    "redacted_at",
    "sender_key",
    "recipient_key",
    "key_id",
)


def _db_values(row: dict) -> tuple:
    """The row's values as inserted: its personal fields sealed (`seal_rows`) unless it is
    stored redacted."""
    sealed = row.get("sealed")
    if sealed is not None:
        sender, recipient, body, details = sealed
    else:
        sender, recipient, body, details = (
            row["sender"],
            row["recipient"],
            row["body"],
            row["details"],
        )
    return (
        row["id"],
        row["account"],
        row["product"],
        row["direction"],
        Transaction.created_at.db_value(row["created_at"]),
        sender,
        recipient,
        body,
        Transaction.details.db_value(details),
        Transaction.redacted_at.db_value(row.get("redacted_at")),
        row["sender_key"],
        row["recipient_key"],
        row.get("key_id"),
    )


# Storing 1,000 records: the SQL of a statement is generated once per size (see
# PreparedQuery), not for every request while the writer holds the lock.
_INSERT = PreparedQuery(
    lambda mark, n: (
        Transaction.insert_many(
            [[mark("rows", i, j) for j in range(len(_INSERTED))] for i in range(n)],
            fields=[getattr(Transaction, name) for name in _INSERTED],
        )
        .on_conflict(conflict_target=[Transaction.id, Transaction.account], action="NOTHING")
        .returning(Transaction.id, Transaction.account)
    )
)
