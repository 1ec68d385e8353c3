"""Records in and out: the one schema a record is read with (the records API and `redact
transactions load`), storing records all or nothing and idempotently, redaction on
arrival (`immediate` policies), and a record read back as stored.

Storing goes through the group commit (models/store/group_commit.py), as redactions do: the
requests of the moment share a transaction, each in a savepoint of its own, so one
request's conflict leaves the others untouched.
"""

from __future__ import annotations

import dataclasses
import datetime
import typing
from collections.abc import Iterable, Sequence
from typing import Any

import marshmallow
from marshmallow import fields, validate

from models.erasure.holds import TRANSACTION, HoldItem, LegalHold, held_records
from models.erasure.redaction import log_entry, scrubbed_fields
from models.erasure.retention import arrival_policies
from models.errors import InvalidRecords, RecordConflict, RecordNotFound
from models.proof import entries
from models.records.products import (
    DIRECTIONS,
    PRODUCTS,
    REDACTED,
    direction_of,
    record_kind,
    scrub_details,
)
from models.records.transaction import RedactionAudit, Transaction
from models.store.prepared import PreparedQuery
from models.store.state import current_store

# PostgreSQL's text cannot hold NUL (details are stored as JSON, which escapes it).
_NO_NUL = validate.Regexp(r"^[^\x00]*\Z", error="a NUL character is not allowed")


class _Refused(fields.Field):
    """A name a record may not use: present, it is an error; absent, nothing."""

    def _deserialize(self, value, attr, data, **kwargs):
        raise marshmallow.ValidationError(self.metadata["why"])


def _refused(why: str, name: str | None = None) -> _Refused:
    return _Refused(load_only=True, data_key=name, metadata={"why": why})


class RecordSchema(marshmallow.Schema):
    """One transaction record, as the records API takes it (the account that sends it
    owns it). Fields other than these are product-specific details (personal unless the
    product's scrub policy declares them kept)."""

    class Meta:
        unknown = marshmallow.INCLUDE

    id = fields.String(required=True, validate=[validate.Length(min=1, max=64), _NO_NUL])
    product = fields.String(required=True, validate=validate.OneOf(PRODUCTS))
    type = fields.String(validate=validate.OneOf(DIRECTIONS), load_default=None)
    created_at = fields.AwareDateTime(required=True, default_timezone=datetime.UTC)
    from_ = fields.String(data_key="from", allow_none=True, load_default=None, validate=_NO_NUL)
    to = fields.String(allow_none=True, load_default=None, validate=_NO_NUL)
    text = fields.String(allow_none=True, load_default=None, validate=_NO_NUL)
    api_key: fields.Field = _refused("leave it out: records belong to the account that sends them")
    # The read-back answer's own names, and the attribute `from` loads into (a field named
    # `from_` would replace the sender).
    redaction = _refused("a name the service uses; not a record field")
    held = _refused("a name the service uses; not a record field")
    holds = _refused("a name the service uses; not a record field")
    refused_from = _refused("a name the service uses; not a record field", "from_")

    # Run for every record, also when others of the lot have errors (so that each is named).
    @marshmallow.validates_schema(skip_on_field_errors=False)
    def _type_only_for_sms(self, data, **kwargs):
        if data.get("type") is not None and data.get("product") not in (None, "sms"):
            raise marshmallow.ValidationError("only SMS records have a type", "type")


class LoadRecordSchema(RecordSchema):
    """A line of a load file (`redact transactions load`): a record naming its account."""

    api_key = fields.String(required=True, validate=validate.Length(min=1, max=64))


SCHEMA = RecordSchema()
LOAD_SCHEMA = LoadRecordSchema()
_KNOWN = {"id", "api_key", "product", "type", "created_at", "from_", "to", "text"}


def parse_records(records: Sequence[Any], api_key: str | None) -> list[dict]:
    """The rows for `records`, owned by `api_key` (None: each names its own `api_key`, as
    a load file's lines do). Raises InvalidRecords listing every problem as (index,
    field, message), in order."""
    problems: list[tuple[int, str, str]] = []
    objects = [index for index, raw in enumerate(records) if isinstance(raw, dict)]
    if len(objects) < len(records):
        problems.extend(
            (index, "", "a record must be a JSON object")
            for index, raw in enumerate(records)
            if not isinstance(raw, dict)
        )
        records = [records[index] for index in objects]
    # One call for the lot: marshmallow's per-call overhead is paid once.
    try:
        loaded = (SCHEMA if api_key is not None else LOAD_SCHEMA).load(records, many=True)
    except marshmallow.ValidationError as exc:
        assert isinstance(exc.messages, dict)
        for position, messages in exc.messages.items():
            problems.extend((objects[position], f, m) for f, m in _flat(messages))
        raise InvalidRecords(sorted(problems), len(problems)) from None
    rows = []
    subject_key = current_store().subject_key
    for position, data in enumerate(loaded):
        try:
            created_at = data["created_at"].astimezone(datetime.UTC)
        except OverflowError:
            problems.append((objects[position], "created_at", "out of range in UTC"))
            continue
        details = {k: v for k, v in data.items() if k not in _KNOWN}
        rows.append(
            {
                "id": data["id"],
                "account": api_key or data["api_key"],
                "product": data["product"],
                "direction": direction_of(data["product"], data["type"]),
                "created_at": created_at,
                "sender": data["from_"],
                "recipient": data["to"],
                "body": data["text"],
                "details": details or None,
                "sender_key": subject_key.hash(data["from_"]),
                "recipient_key": subject_key.hash(data["to"]),
            }
        )
    if problems:
        raise InvalidRecords(sorted(problems), len(problems))
    return rows


def _flat(messages, prefix: str = "") -> Iterable[tuple[str, str]]:
    """marshmallow's nested messages as (field, message) pairs."""
    if isinstance(messages, dict):
        for field, inner in messages.items():
            name = "" if field == "_schema" else str(field)
            yield from _flat(inner, f"{prefix}.{name}" if prefix and name else prefix or name)
    elif isinstance(messages, list):
        for inner in messages:
            yield from _flat(inner, prefix)
    else:
        yield prefix, str(messages).rstrip(".")


@dataclasses.dataclass
class StoreCounts:
    received: int = 0
    stored: int = 0
    unchanged: int = 0
    redacted_on_arrival: int = 0

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
    return await current_store().group_commit.run_async(
        store_batch, StoreRequest(rows, now, trace_id)
    )


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


_COMPARED = ("product", "direction", "created_at", "sender", "recipient", "body", "details")


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
    for size in _chunks(len(values)):
        cursor = _INSERT.execute(size, {"rows": values[start : start + size]})
        inserted.update((transaction_id, account) for transaction_id, account in cursor)
        start += size
    existing = [name for name in fresh if name not in inserted]
    if existing:
        stored = _stored(existing)
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
        positions = entries.append(
            [
                log_entry(
                    row["account"],
                    (row["id"], row["product"], row["direction"]),
                    scrubbed_fields(
                        row["product"], row["sender"], row["recipient"], row["body"], row["details"]
                    ),
                    "policy",
                    request.trace_id,
                )
                for row in redacted
            ],
            request.now,
        )
        RedactionAudit.insert_many(
            [
                (
                    *(request.now, row["account"], row["id"], row["product"]),
                    *(request.trace_id, "policy", position),
                )
                for row, position in zip(redacted, positions, strict=True)
            ],
            fields=(
                RedactionAudit.at,
                RedactionAudit.api_key,
                RedactionAudit.transaction_id,
                RedactionAudit.product,
                RedactionAudit.trace_id,
                RedactionAudit.source,
                RedactionAudit.log_index,
            ),
        ).execute()
    counts.stored = len(inserted)
    counts.redacted_on_arrival = len(redacted)
    return counts


def redacted_row(row: dict, now: datetime.datetime) -> dict:
    """`row` as a redaction leaves it: personal fields REDACTED, numbers unindexed."""
    details = row["details"]
    return {
        **row,
        "sender": None if row["sender"] is None else REDACTED,
        "recipient": None if row["recipient"] is None else REDACTED,
        "body": None if row["body"] is None else REDACTED,
        "details": scrub_details(row["product"], details) if details else details,
        "redacted_at": now,
        "sender_key": None,
        "recipient_key": None,
    }


def _content(row: dict) -> tuple:
    return tuple(row[field] for field in _COMPARED)


def _same(offered: dict, stored: dict) -> bool:
    """Whether `offered` is the record `stored` holds: the same fields, or, once it is
    redacted, the same fields as a redaction leaves them."""
    if stored["redacted_at"] is not None:
        offered = redacted_row(offered, stored["redacted_at"])
    return _content(offered) == _content(stored)


def _stored(names: list[tuple[str, str]]) -> dict[tuple[str, str], dict]:
    """The records of `names` the store holds, as dicts of python values."""
    wanted = set(names)
    ids = sorted({transaction_id for transaction_id, _ in names})
    fields = [getattr(Transaction, name) for name in _STORED]
    found = {}
    start = 0
    for size in _chunks(len(ids)):
        for raw in _FIND.execute(size, {"id": ids[start : start + size]}).fetchall():
            if (raw[0], raw[1]) in wanted:
                row = {f.name: f.python_value(v) for f, v in zip(fields, raw, strict=True)}
                found[(raw[0], raw[1])] = row
        start += size
    return found


def _chunks(count: int, largest: int = 512) -> list[int]:
    """`count` as statement sizes that are powers of two (at most `largest`): a handful of
    shapes, each prepared once."""
    sizes = []
    while count:
        size = min(largest, 1 << (count.bit_length() - 1))
        sizes.append(size)
        count -= size
    return sizes


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
)


def _db_values(row: dict) -> tuple:
    return (
        row["id"],
        row["account"],
        row["product"],
        row["direction"],
        Transaction.created_at.db_value(row["created_at"]),
        row["sender"],
        row["recipient"],
        row["body"],
        Transaction.details.db_value(row["details"]),
        Transaction.redacted_at.db_value(row.get("redacted_at")),
        row["sender_key"],
        row["recipient_key"],
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
_STORED = ("id", "account", "redacted_at", *_COMPARED)
_FIND = PreparedQuery(
    lambda mark, n: Transaction.select(*(getattr(Transaction, name) for name in _STORED)).where(
        Transaction.id.in_([mark("id", i) for i in range(n)])
    )
)


def read_record(api_key: str, transaction_id: str, product: str, type_: str | None) -> dict:
    """The account's record as stored (scrubbed fields read REDACTED), how it was redacted
    (None if it is not) and which active holds cover it. RecordNotFound for an unknown
    id, another account's record, or another product or type."""
    direction = direction_of(product, type_)
    if "\x00" in transaction_id:  # no stored id holds NUL (PostgreSQL's text cannot)
        raise RecordNotFound(transaction_id, record_kind(product, direction))
    record = Transaction.get_or_none(
        (Transaction.id == transaction_id) & (Transaction.account == api_key)
    )
    if record is None or (record.product, record.direction) != (product, direction):
        raise RecordNotFound(transaction_id, record_kind(product, direction))
    shown: dict[str, Any] = {"id": record.id, "product": record.product}
    if record.product == "sms":
        shown["type"] = record.direction
    shown["created_at"] = record.created_at.isoformat()
    shown.update({"from": record.sender, "to": record.recipient, "text": record.body})
    shown.update(record.details or {})
    shown["redaction"] = _redaction(record)
    holds = _covering_holds(record)
    shown["held"] = bool(holds)
    shown["holds"] = holds
    return shown


def _redaction(record: Transaction) -> dict | None:
    if record.redacted_at is None:
        return None
    entry = (
        RedactionAudit.select(RedactionAudit.source, RedactionAudit.trace_id)
        .where(
            (RedactionAudit.api_key == record.api_key)
            & (RedactionAudit.transaction_id == record.id)
        )
        .order_by(RedactionAudit.id.desc())
        .first()
    )
    source = entry.source if entry is not None else "api"
    return {
        "redacted_at": record.redacted_at.isoformat(),
        "source": source,
        "job": entry.trace_id if entry is not None and source == "job" else None,
    }


def _covering_holds(record: Transaction) -> list[str]:
    if record.redacted_at is not None:
        return []
    values = [v for v in (record.id, record.sender_key, record.recipient_key) if v is not None]
    rows: list[Any] = list(
        LegalHold.select(LegalHold.id, HoldItem.kind, HoldItem.value)
        .join(HoldItem)
        .where(
            (HoldItem.api_key == record.api_key)
            & HoldItem.value.in_(values)
            & (LegalHold.status == "active")
        )
        .order_by(LegalHold.seq)
        .tuples()
    )
    return sorted(
        {hold_id for hold_id, kind, value in rows if (kind == TRANSACTION) == (value == record.id)}
    )
