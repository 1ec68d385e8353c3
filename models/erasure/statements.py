"""The statements of a batch of redactions, built once per batch size (see PreparedQuery):
reading the records named (`FIND`), scrubbing them (`SCRUB`), and the scrub with its audit
and log entries (`scrub_and_audit`); models/erasure/redaction.py decides what to scrub,
models/erasure/settling.py completes what an interrupted batch left.
"""

from __future__ import annotations

import datetime
import typing
from typing import Any

import peewee

from models.erasure.scrub import Redacted, audit_redactions, scrub, scrubbed_fields
from models.records.transaction import Transaction
from models.store.prepared import PreparedQuery


class RedactionRequest(typing.NamedTuple):
    """One record to redact, for whom and why (a named tuple: a job makes millions)."""

    api_key: str
    transaction_id: str
    product: str
    direction: str | None
    now: datetime.datetime
    min_age_seconds: int
    trace_id: str
    source: str


class Found(typing.NamedTuple):
    """A record as `FIND` reads it (its columns are these fields): raw database values."""

    id: str
    account: str
    product: str
    direction: str | None
    created_at: Any
    redacted_at: Any
    sender: str | None
    recipient: str | None
    body: str | None
    details: Any
    sender_key: str | None
    recipient_key: str | None
    key_id: str | None


SELECTED = tuple(getattr(Transaction, name) for name in Found._fields)

FIND = PreparedQuery(
    lambda mark, n: Transaction.select(*SELECTED).where(
        Transaction.id.in_([mark("id", i) for i in range(n)])
    )
)


def build_scrub(mark, n):
    columns = ("id", "api_key", *Transaction.PERSONAL_COLUMNS, "details")
    # A CTE with named columns: SQLite cannot name the columns of a VALUES subquery.
    values = peewee.ValuesList(
        [[mark("scrub", i, j) for j in range(len(columns))] for i in range(n)]
    ).cte("scrub", columns=columns)
    return (
        Transaction.update(
            {
                **{getattr(Transaction, c): getattr(values.c, c) for c in columns[2:]},
                Transaction.redacted_at: mark("now"),
                **{getattr(Transaction, c): None for c in Transaction.SUBJECT_COLUMNS},
            }
        )
        .from_(values)
        .where(
            (Transaction.id == values.c.id)
            & (Transaction.account == values.c.api_key)
            & Transaction.redacted_at.is_null()
        )
        .returning(Transaction.id, Transaction.account)
        .with_cte(values)
    )


SCRUB = PreparedQuery(build_scrub)


def scrubbed_values(product: str, row: Found) -> tuple[tuple, list[str]]:
    """(id, account, sender, recipient, body, details) as the scrub writes them, and the
    names of the fields it scrubs."""
    details = Transaction.details.python_value(row.details)
    names = scrubbed_fields(product, row.sender, row.recipient, row.body, details)
    sender, recipient, body, details = scrub(product, row.sender, row.recipient, row.body, details)
    return (
        row.id,
        row.account,
        sender,
        recipient,
        body,
        Transaction.details.db_value(details),
    ), names


def scrub_and_audit(requests, outcomes, to_scrub, fields, keys, positions) -> None:
    """The scrub of `to_scrub`, and the audit and log entries of what it scrubbed
    (`outcomes` of those a concurrent transaction scrubbed first become False)."""
    now = Transaction.redacted_at.db_value(max(r.now for r in requests))
    values = {"now": now, "scrub": list(to_scrub.values())}
    scrubbed = set(map(tuple, SCRUB.execute(len(to_scrub), values)))  # (id, account)

    redacted = []
    for index, request in enumerate(requests):
        if outcomes[index] is not True:
            continue
        name = (request.transaction_id, request.api_key)
        if name not in scrubbed:
            outcomes[index] = False  # a concurrent transaction scrubbed it first
            continue
        redacted.append(
            Redacted(
                request.api_key,
                request.transaction_id,
                request.product,
                request.direction,
                fields[name],
                request.source,
                request.trace_id,
                request.now,
                keys[name],
            )
        )
    if redacted:
        logged = audit_redactions(redacted, max(r.now for r in requests))
        if positions is not None:
            positions.extend(logged)
