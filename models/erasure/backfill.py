"""`redact receipts backfill`: log entries, written after the fact, for records redacted
before the erasure log existed, so that their receipts can be issued.

Such a record is redacted (`redacted_at`) but no audit row of it names a log entry. Its
entry is a `redaction` entry like any other (the record, the fields it holds redacted,
the source and trace id its audit row recorded, if any) with `"backfilled": true`, and its
`at` is when the entry was written, not when the record was redacted: the entry proves
that the record was redacted by then, and nothing of the redaction's own time. The flag is
part of the entry's document, so of its leaf hash and of every tree head after it: it
cannot be taken off without breaking them. The audit row then names the entry (one is
added for a record that had none), so a second run finds nothing to do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from peewee import JOIN, fn

from models.erasure.scrub import log_entry, scrubbed_fields
from models.proof import entries
from models.records.transaction import RedactionAudit, Transaction
from models.store.base import Clock, database

BATCH = 500
TRACE_ID = "cli:receipts-backfill"


def to_backfill(api_key: str | None = None) -> dict[str, int]:
    """How many records each account (`api_key` only, if given) holds redacted without a
    log entry, by account, in order (none: nothing to do)."""
    query = (
        _unlogged(api_key)
        .select(Transaction.account, fn.COUNT(Transaction.id))
        .group_by(Transaction.account)
        .tuples()
    )
    return dict(sorted((account, count) for account, count in query))


def backfill(api_key: str, clock: Clock, progress: Callable[[int], None] | None = None) -> int:
    """Append a backfilled `redaction` entry for each record of the account redacted
    without one, BATCH records a transaction, each at the clock's time as it is written;
    how many were appended. Each batch
    holds the account's log before it looks for the records, so concurrent runs (or
    redactions) never log a record twice. `progress` is called with the count so far."""
    done = 0
    after = ""  # the records come in id order: a batch starts after the last one's
    while True:
        with database.atomic():
            entries.lock_log(api_key)
            rows: list[Any] = list(
                _unlogged(api_key)
                .where(Transaction.id > after)
                .select(
                    Transaction.id,
                    Transaction.product,
                    Transaction.direction,
                    Transaction.redacted_at,
                    Transaction.sender,
                    Transaction.recipient,
                    Transaction.body,
                    Transaction.details,
                )
                .order_by(Transaction.id)
                .limit(BATCH)
                .tuples()
            )
            if not rows:
                return done
            after = rows[-1][0]
            audits = _audits(api_key, [row[0] for row in rows])
            positions = entries.append([_entry(api_key, row, audits) for row in rows], clock())
            for row, position in zip(rows, positions, strict=True):
                _name_entry(api_key, row, audits.get(row[0]), position)
        done += len(rows)
        if progress is not None:
            progress(done)


def _unlogged(api_key: str | None):
    logged = RedactionAudit.alias()
    named = (
        (logged.api_key == Transaction.account)
        & (logged.transaction_id == Transaction.id)
        & logged.log_index.is_null(False)
    )
    where = Transaction.redacted_at.is_null(False) & logged.id.is_null()
    if api_key is not None:
        where &= Transaction.account == api_key
    return Transaction.select().join(logged, JOIN.LEFT_OUTER, on=named).where(where)


def _audits(api_key: str, ids: list[str]) -> dict[str, Any]:
    """The newest audit row of each record, by id (none for a record redacted unaudited)."""
    found: dict[str, Any] = {}
    rows = (
        RedactionAudit.select()
        .where((RedactionAudit.api_key == api_key) & RedactionAudit.transaction_id.in_(ids))
        .order_by(RedactionAudit.id)
    )
    for row in rows:
        found[row.transaction_id] = row
    return found


def _entry(api_key: str, row: tuple, audits: dict[str, Any]) -> tuple[str, str, dict]:
    transaction_id, product, direction, _, sender, recipient, body, details = row
    audit = audits.get(transaction_id)
    if not isinstance(details, dict):
        details = None
    account, kind, fields = log_entry(
        api_key,
        (transaction_id, product, direction),
        scrubbed_fields(product, sender, recipient, body, details),
        audit.source if audit else "unknown",
        audit.trace_id if audit else TRACE_ID,
    )
    return account, kind, {**fields, "backfilled": True}


def _name_entry(api_key: str, row: tuple, audit: Any, position: int) -> None:
    """The record's audit row names its entry; one is added if it had none."""
    if audit is not None:
        RedactionAudit.update(log_index=position).where(RedactionAudit.id == audit.id).execute()
        return
    transaction_id, product, _, redacted_at = row[:4]
    RedactionAudit.insert(
        at=Transaction.redacted_at.python_value(redacted_at),
        api_key=api_key,
        transaction_id=transaction_id,
        product=product,
        trace_id=TRACE_ID,
        source="backfill",
        log_index=position,
    ).execute()
