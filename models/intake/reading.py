"""A record read back as stored (scrubbed fields read REDACTED), with how it was redacted
and which active legal holds cover it.
"""

from __future__ import annotations

from typing import Any

from models.erasure.held import TRANSACTION, HoldItem, LegalHold
from models.erasure.settling import settle_record
from models.errors import RecordNotFound
from models.records.products import (
    direction_of,
    record_kind,
)
from models.records.sealed import open_fields
from models.records.transaction import RedactionAudit, Transaction
from models.store.state import current_store


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
    sender, recipient, body, details = record.sender, record.recipient, record.body, record.details
    if record.key_id is not None and record.redacted_at is None:
        key = current_store().keystore.fetch([record.key_id]).get(record.key_id)
        if key is None and settle_record(record.key_id):  # redacted: its scrub was pending
            return read_record(api_key, transaction_id, product, type_)
        sender, recipient, body, details = open_fields(
            key, api_key, record.id, record.product, sender, recipient, body, details
        )
    shown.update({"from": sender, "to": recipient, "text": body})
    shown.update(details or {})
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
