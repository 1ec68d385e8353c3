"""Loading transaction records from JSON Lines, one validated record per line."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable
from typing import Any

import marshmallow
from marshmallow import fields, validate

from .account import Account
from .base import database
from .errors import InvalidRecord
from .policy import DIRECTIONS, PRODUCTS, direction_of
from .store import current_store
from .transaction import Transaction

BATCH = 500


class TransactionRecordSchema(marshmallow.Schema):
    """One line of a load file. Fields other than these are product-specific details."""

    class Meta:
        unknown = marshmallow.INCLUDE

    id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    api_key = fields.String(required=True, validate=validate.Length(min=1, max=64))
    product = fields.String(required=True, validate=validate.OneOf(PRODUCTS))
    type = fields.String(validate=validate.OneOf(DIRECTIONS), load_default=None)
    created_at = fields.AwareDateTime(required=True, default_timezone=datetime.UTC)
    from_ = fields.String(data_key="from", allow_none=True, load_default=None)
    to = fields.String(allow_none=True, load_default=None)
    text = fields.String(allow_none=True, load_default=None)

    @marshmallow.validates_schema
    def _type_only_for_sms(self, data, **kwargs):
        if data.get("type") is not None and data.get("product") != "sms":
            raise marshmallow.ValidationError("only SMS records have a type", "type")


_SCHEMA = TransactionRecordSchema()
_KNOWN = {"id", "api_key", "product", "type", "created_at", "from_", "to", "text"}


def parse_record(line: str) -> dict:
    """The row for one JSON Lines record; raises InvalidRecord saying what is wrong."""
    try:
        raw = json.loads(line)
    except ValueError as exc:
        raise InvalidRecord(f"not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise InvalidRecord("a record must be a JSON object")
    try:
        data = _SCHEMA.load(raw)
    except marshmallow.ValidationError as exc:
        raise InvalidRecord(_first_error(exc.messages)) from None
    details = {k: v for k, v in data.items() if k not in _KNOWN}
    direction = direction_of(data["product"], data["type"])
    subject_key = current_store().subject_key
    return {
        "id": data["id"],
        "account": data["api_key"],
        "product": data["product"],
        "direction": direction,
        "created_at": data["created_at"].astimezone(datetime.UTC),
        "sender": data["from_"],
        "recipient": data["to"],
        "body": data["text"],
        "details": details or None,
        "sender_key": subject_key.hash(data["from_"]),
        "recipient_key": subject_key.hash(data["to"]),
    }


def load_records(lines: Iterable[str]) -> int:
    """Store every record of `lines` (JSON Lines; blank lines skipped) in one transaction.

    All or nothing: on the first bad line, raises InvalidRecord naming its line number,
    and nothing is stored. Returns how many records were stored.
    """
    known_accounts: set[str] = set()
    count = 0
    with database.atomic():
        batch: list[tuple[int, dict]] = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = parse_record(line)
                _check_account(row["account"], known_accounts)
            except InvalidRecord as exc:
                raise InvalidRecord(f"line {number}: {exc}") from None
            batch.append((number, row))
            if len(batch) >= BATCH:
                count += _insert(batch)
        count += _insert(batch)
    return count


def _check_account(api_key: str, known: set[str]) -> None:
    if api_key in known:
        return
    if not Account.select().where(Account.api_key == api_key).exists():
        raise InvalidRecord(f"api_key: no account {api_key!r}")
    known.add(api_key)


def _insert(batch: list[tuple[int, dict]]) -> int:
    if not batch:
        return 0
    ids = [row["id"] for _, row in batch]
    found: list[Any] = list(
        Transaction.select(Transaction.id, Transaction.account)
        .where(Transaction.id.in_(ids))
        .tuples()
    )
    stored = {(transaction_id, account) for transaction_id, account in found}
    for number, row in batch:
        name = (row["id"], row["account"])
        if name in stored:
            raise InvalidRecord(f"line {number}: id {row['id']!r} is already stored")
        stored.add(name)
    Transaction.insert_many([row for _, row in batch]).execute()
    n = len(batch)
    batch.clear()
    return n


def _first_error(messages) -> str:
    if isinstance(messages, dict):
        field, problem = next(iter(messages.items()))
        return f"{field}: {_first_error(problem)}"
    if isinstance(messages, list):
        return _first_error(messages[0])
    return str(messages).rstrip(".")
