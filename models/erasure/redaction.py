"""Redacting transactions: the rules (provisioning, ownership, legal holds, the premature
window) and the scrub itself, atomic, audited and erased from the database files.

Concurrent requests are redacted together: each batch is one SELECT, one UPDATE and one
INSERT in one transaction (see GroupCommit), so the cost of a commit and of the
statements is shared.
"""

from __future__ import annotations

import datetime
import typing
from collections.abc import Collection
from typing import Any

import peewee

from models.erasure.held import held_records
from models.erasure.scrub import Redacted, audit_redactions, scrub, scrubbed_fields
from models.errors import PrematureRedaction, RecordHeld, RecordNotFound, Unprovisioned
from models.records.products import direction_of, record_kind
from models.records.transaction import Transaction
from models.store.prepared import PreparedQuery
from models.store.state import current_store


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


def redaction_request(
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
) -> RedactionRequest:
    """The redaction of one record of account `api_key`, checked against the account's
    products (Unprovisioned); `redact_transaction(_async)` carry it out.

    `direction` (outbound/inbound) selects the kind of SMS record; other products ignore it.
    """
    if product not in products:
        raise Unprovisioned(api_key, product)
    if "\x00" in transaction_id:  # no stored id holds NUL (PostgreSQL's text cannot)
        raise RecordNotFound(transaction_id, record_kind(product, direction_of(product, direction)))
    return RedactionRequest(
        api_key,
        transaction_id,
        product,
        direction_of(product, direction),
        now,
        min_age_seconds,
        trace_id,
        source,
    )


def redact_transaction(**request) -> bool:
    """Scrub the personal fields of one record (arguments as `redaction_request`).

    Returns True if this call scrubbed the record, False if it was already redacted.
    Raises Unprovisioned, RecordNotFound (also for another account's record, so as not to
    reveal it exists), RecordHeld (a legal hold covers it) or PrematureRedaction. The
    scrub and its audit entry commit together, before this returns.
    """
    return current_store().group_commit.run(redact_batch, redaction_request(**request))


async def redact_transaction_async(**request) -> bool:
    """`redact_transaction` for a coroutine: it awaits the commit without holding a
    thread."""
    return await current_store().group_commit.run_async(redact_batch, redaction_request(**request))


def redact_batch(requests: list[RedactionRequest], positions: list[int] | None = None) -> list:
    """Redact `requests` inside the caller's transaction; one outcome per request: True
    (scrubbed now), False (already redacted) or the exception saying why not. Each
    scrub is audited and appended to its account's erasure log (models/erasure/scrub.py); the
    log positions are added to `positions` if given."""
    ids = sorted({r.transaction_id for r in requests})
    found = list(map(_Found._make, _FIND.execute(len(ids), {"id": ids}).fetchall()))
    rows = {(row.id, row.account): row for row in found}  # an id may name several accounts'
    held = held_records(
        [
            (row.id, row.account, row.sender_key, row.recipient_key)
            for row in found
            if row.redacted_at is None
        ]
    )
    outcomes: list = []
    to_scrub: dict[tuple[str, str], tuple] = {}  # the scrub's values by record
    fields: dict[tuple[str, str], list[str]] = {}  # the names of the fields it scrubs
    cutoffs: dict[tuple, datetime.datetime] = {}  # the requests of a job share one `now`
    for request in requests:
        name = (request.transaction_id, request.api_key)
        row = rows.get(name)
        if row is None or (row.product, row.direction) != (request.product, request.direction):
            outcomes.append(
                RecordNotFound(
                    request.transaction_id, record_kind(request.product, request.direction)
                )
            )
            continue
        if row.redacted_at is not None or name in to_scrub:
            outcomes.append(False)
        elif name in held:
            outcomes.append(RecordHeld(request.transaction_id))
        elif _is_newer(row.created_at, _cutoff(cutoffs, request.now, request.min_age_seconds)):
            age = (
                request.now - Transaction.created_at.python_value(row.created_at)
            ).total_seconds()
            outcomes.append(
                PrematureRedaction(
                    request.transaction_id, request.min_age_seconds, request.min_age_seconds - age
                )
            )
        else:
            to_scrub[name], fields[name] = _scrubbed_values(request.product, row)
            outcomes.append(True)
    if not to_scrub:
        return outcomes

    # The keys are destroyed, durably, before this transaction commits: once they are
    # gone no copy of these records opens, and a crash before the scrub commits leaves
    # nothing readable (the retry scrubs). The key store commits in its own thread while
    # the scrub's statements run here.
    keys = {name: rows[name].key_id for name in to_scrub}
    destroying = current_store().keystore.destroying(
        [key for key in keys.values() if key], max(r.now for r in requests)
    )
    try:
        _scrub_and_audit(requests, outcomes, to_scrub, fields, keys, positions)
    finally:
        destroying.result()  # raises if the keys are not destroyed: nothing commits then
    return outcomes


def _scrub_and_audit(requests, outcomes, to_scrub, fields, keys, positions) -> None:
    """The scrub of `to_scrub`, and the audit and log entries of what it scrubbed
    (`outcomes` of those a concurrent transaction scrubbed first become False)."""
    now = Transaction.redacted_at.db_value(max(r.now for r in requests))
    values = {"now": now, "scrub": list(to_scrub.values())}
    scrubbed = set(map(tuple, _SCRUB.execute(len(to_scrub), values)))  # (id, account)

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


def _cutoff(cache: dict, now: datetime.datetime, min_age_seconds: int):
    """`now` less the premature window, as the database stores times (memoized)."""
    key = (now, min_age_seconds)
    cutoff = cache.get(key)
    if cutoff is None:
        cutoff = cache[key] = Transaction.created_at.db_value(
            now - datetime.timedelta(seconds=min_age_seconds)
        )
    return cutoff


def _is_newer(stored, moment) -> bool:
    """Whether a stored `created_at` (raw: SQLite's text, PostgreSQL's naive datetime) is
    after `moment` (as stored too), without parsing the common case: SQLite's ISO text in
    UTC compares as text."""
    if isinstance(stored, str) and stored[10:11] == " ":
        return stored > str(moment)
    return Transaction.created_at.python_value(stored) > Transaction.created_at.python_value(moment)


class _Found(typing.NamedTuple):
    """A record as `_FIND` reads it (its columns are these fields): raw database values."""

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


_SELECTED = tuple(getattr(Transaction, name) for name in _Found._fields)

# The three statements of a batch, built once per batch size (see PreparedQuery).
_FIND = PreparedQuery(
    lambda mark, n: Transaction.select(*_SELECTED).where(
        Transaction.id.in_([mark("id", i) for i in range(n)])
    )
)


def _build_scrub(mark, n):
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


_SCRUB = PreparedQuery(_build_scrub)


def _scrubbed_values(product: str, row: _Found) -> tuple[tuple, list[str]]:
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
