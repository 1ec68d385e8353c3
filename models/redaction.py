"""Redacting one transaction: the rules (provisioning, ownership, the premature window)
and the scrub itself, atomic, audited and erased from the database files."""

from __future__ import annotations

import datetime
from typing import Collection

from .db import PreparedQuery, database
from .errors import PrematureRedaction, RecordNotFound, Unprovisioned
from .policy import REDACTED, record_kind, scrub_details
from .transaction import RedactionAudit, Transaction

# The three statements of a redaction, built once (see PreparedQuery).
_FIND = PreparedQuery(
    lambda p: Transaction.select(
        Transaction.direction, Transaction.created_at, Transaction.redacted_at,
        Transaction.sender, Transaction.recipient, Transaction.body, Transaction.details,
    ).where(
        (Transaction.id == p.id) & (Transaction.account == p.api_key)
        & (Transaction.product == p.product)
    ),
    id=Transaction.id, api_key=Transaction.account, product=Transaction.product,
)
_SCRUB = PreparedQuery(
    lambda p: Transaction.update({
        Transaction.sender: p.sender, Transaction.recipient: p.recipient,
        Transaction.body: p.body, Transaction.details: p.details,
        Transaction.redacted_at: p.now,
    }).where((Transaction.id == p.id) & Transaction.redacted_at.is_null()),
    sender=Transaction.sender, recipient=Transaction.recipient, body=Transaction.body,
    details=Transaction.details, now=Transaction.redacted_at, id=Transaction.id,
)
_AUDIT = PreparedQuery(
    lambda p: RedactionAudit.insert(
        at=p.at, api_key=p.api_key, transaction_id=p.id, product=p.product,
        trace_id=p.trace_id, source=p.source,
    ),
    at=RedactionAudit.at, api_key=RedactionAudit.api_key, id=RedactionAudit.transaction_id,
    product=RedactionAudit.product, trace_id=RedactionAudit.trace_id,
    source=RedactionAudit.source,
)


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
    reveal it exists) or PrematureRedaction. The scrub and its audit entry commit
    together, possibly in one transaction with concurrent redactions (GroupCommit).
    """
    if product not in products:
        raise Unprovisioned(api_key, product)
    if product != "sms":
        direction = None
    elif direction is None:
        direction = "outbound"

    def work() -> bool:
        row = _FIND.execute(id=transaction_id, api_key=api_key, product=product).fetchone()
        if row is None or row[0] != direction:
            raise RecordNotFound(transaction_id, record_kind(product, direction))
        _, created_at, redacted_at, sender, recipient, body, details = row
        if redacted_at is not None:
            return False
        age = (now - Transaction.created_at.python_value(created_at)).total_seconds()
        if age < min_age_seconds:
            raise PrematureRedaction(transaction_id, min_age_seconds, min_age_seconds - age)
        details = Transaction.details.python_value(details)
        scrubbed = _SCRUB.execute(
            sender=_scrubbed(sender), recipient=_scrubbed(recipient), body=_scrubbed(body),
            details=scrub_details(product, details) if details else details,
            now=now, id=transaction_id,
        )
        if scrubbed.rowcount != 1:
            return False  # a concurrent request scrubbed it first
        _AUDIT.execute(at=now, api_key=api_key, id=transaction_id, product=product,
                       trace_id=trace_id, source=source)
        return True

    return database.obj.group_commit.run(
        work, key=transaction_id, expected=(RecordNotFound, PrematureRedaction)
    )


def _scrubbed(value: str | None) -> str | None:
    return None if value is None else REDACTED
