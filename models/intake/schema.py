"""The one schema a record is read with (the records API and `redact transactions load`):
`parse_records` turns what a client sent into rows to store, or InvalidRecords naming every
problem.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Sequence
from typing import Any

import marshmallow
from marshmallow import fields, validate

from models.errors import InvalidRecords
from models.records.products import (
    DIRECTIONS,
    PRODUCTS,
    direction_of,
)
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
