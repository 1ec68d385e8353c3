"""Redacting one transaction: the rules (provisioning, ownership, the premature window)
and the scrub itself, atomic, audited and erased from the database files."""

from __future__ import annotations

import datetime
from typing import Collection

from .db import database
from .errors import PrematureRedaction, RecordNotFound, Unprovisioned
from .policy import REDACTED, record_kind, scrub_details
from .transaction import RedactionAudit, Transaction


def redact_transaction(
    *,
    api_key: str,
    products: Collection[str],
    transaction_id: str,
    product: str,
    direction: str | None,
    now: datetime.datetime,
    min_age_seconds: int,
    trace_id: str,
    source: str = "api",
) -> bool:
    """Scrub the personal fields of one record of account `api_key`.

    `direction` (outbound/inbound) selects the kind of SMS record; other products ignore it.
    Returns True if this call scrubbed the record, False if it was already redacted.
    Raises Unprovisioned, RecordNotFound (also for another account's record, so as not to
    reveal it exists) or PrematureRedaction.
    """
    if product not in products:
        raise Unprovisioned(api_key, product)
    if product != "sms":
        direction = None
    elif direction is None:
        direction = "outbound"

    with database.atomic():
        record = (
            Transaction.select()
            .where(
                (Transaction.id == transaction_id)
                & (Transaction.account == api_key)
                & (Transaction.product == product)
            )
            .first()
        )
        if record is None or record.direction != direction:
            raise RecordNotFound(transaction_id, record_kind(product, direction))
        if record.redacted_at is not None:
            return False
        age = (now - record.created_at).total_seconds()
        if age < min_age_seconds:
            raise PrematureRedaction(transaction_id, min_age_seconds, min_age_seconds - age)
        if not _scrub(record, now):
            return False  # a concurrent request scrubbed it first
        RedactionAudit.create(
            at=now, api_key=api_key, transaction_id=transaction_id, product=product,
            trace_id=trace_id, source=source,
        )
    database.obj.residue.erase()
    return True


def _scrub(record: Transaction, now: datetime.datetime) -> bool:
    changes = {
        getattr(Transaction, column): REDACTED
        for column in Transaction.PERSONAL_COLUMNS
        if getattr(record, column) is not None
    }
    if record.details:
        changes[Transaction.details] = scrub_details(record.product, record.details)
    changes[Transaction.redacted_at] = now
    updated = Transaction.update(changes).where(
        (Transaction.id == record.id) & Transaction.redacted_at.is_null()
    ).execute()
    return updated == 1
