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

import peewee

from models.erasure.holds import held_records
from models.errors import PrematureRedaction, RecordHeld, RecordNotFound, Unprovisioned
from models.proof import entries
from models.records.products import POLICIES, REDACTED, direction_of, record_kind, scrub_details
from models.records.transaction import RedactionAudit, Transaction
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
    scrub is audited and appended to its account's erasure log (models/proof/entries.py); the
    log positions are added to `positions` if given."""
    ids = sorted({r.transaction_id for r in requests})
    found = _FIND.execute(len(ids), {"id": ids}).fetchall()
    rows = {(row[0], row[1]): row for row in found}  # an id may name records of several accounts
    held = held_records([(row[0], row[1], row[10], row[11]) for row in found if row[5] is None])
    outcomes: list = []
    to_scrub: dict[tuple[str, str], tuple] = {}  # the scrub's values by record
    fields: dict[tuple[str, str], list[str]] = {}  # the names of the fields it scrubs
    cutoffs: dict[tuple, datetime.datetime] = {}  # the requests of a job share one `now`
    for request in requests:
        name = (request.transaction_id, request.api_key)
        row = rows.get(name)
        if row is None or row[2:4] != (request.product, request.direction):
            outcomes.append(
                RecordNotFound(
                    request.transaction_id, record_kind(request.product, request.direction)
                )
            )
            continue
        if row[5] is not None or name in to_scrub:  # redacted_at
            outcomes.append(False)
        elif name in held:
            outcomes.append(RecordHeld(request.transaction_id))
        elif _is_newer(row[4], _cutoff(cutoffs, request.now, request.min_age_seconds)):
            age = (request.now - Transaction.created_at.python_value(row[4])).total_seconds()
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

    now = Transaction.redacted_at.db_value(max(r.now for r in requests))
    values = {"now": now, "scrub": list(to_scrub.values())}
    scrubbed = {(row[0], row[1]) for row in _SCRUB.execute(len(to_scrub), values)}

    audit = []
    log_entries = []
    stamps: dict[datetime.datetime, object] = {}
    for index, request in enumerate(requests):
        if outcomes[index] is not True:
            continue
        name = (request.transaction_id, request.api_key)
        if name not in scrubbed:
            outcomes[index] = False  # a concurrent transaction scrubbed it first
            continue
        stamp = stamps.get(request.now)
        if stamp is None:
            stamp = stamps[request.now] = RedactionAudit.at.db_value(request.now)
        audit.append(
            [
                stamp,
                request.api_key,
                request.transaction_id,
                request.product,
                request.trace_id,
                request.source,
            ]
        )
        log_entries.append(
            log_entry(
                request.api_key,
                (request.transaction_id, request.product, request.direction),
                fields[name],
                request.source,
                request.trace_id,
            )
        )
    if audit:
        logged = entries.append(log_entries, max(r.now for r in requests))
        for row, position in zip(audit, logged, strict=True):
            row.append(position)
        _AUDIT.execute(len(audit), {"audit": audit})
        if positions is not None:
            positions.extend(logged)
    return outcomes


def log_entry(
    api_key: str, record: tuple[str, str, str | None], fields: list[str], source: str, trace_id: str
) -> tuple[str, str, dict]:
    """A `redaction` entry of the erasure log: the record (id, product, type), the names
    of the fields scrubbed, how (source) and under which job or trace id."""
    transaction_id, product, direction = record
    return (
        api_key,
        "redaction",
        {
            "record": {"id": transaction_id, "product": product, "type": direction},
            "fields": fields,
            "source": source,
            "job": trace_id if source == "job" else None,
            "trace_id": trace_id,
        },
    )


def scrubbed_fields(product: str, sender, recipient, body, details: dict | None) -> list[str]:
    """The names of the fields a redaction of such a record scrubs."""
    names = []
    if sender is not None:
        names.append("from")
    if recipient is not None:
        names.append("to")
    if body is not None:
        names.append("text")
    if details:
        kept = POLICIES[product].kept_details
        names.extend(f"details.{key}" for key in sorted(details) if key not in kept)
    return names


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


_SELECTED = (
    Transaction.id,
    Transaction.account,
    Transaction.product,
    Transaction.direction,
    Transaction.created_at,
    Transaction.redacted_at,
    Transaction.sender,
    Transaction.recipient,
    Transaction.body,
    Transaction.details,
    Transaction.sender_key,
    Transaction.recipient_key,
)

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
_AUDIT_FIELDS = (
    RedactionAudit.at,
    RedactionAudit.api_key,
    RedactionAudit.transaction_id,
    RedactionAudit.product,
    RedactionAudit.trace_id,
    RedactionAudit.source,
    RedactionAudit.log_index,
)
_AUDIT = PreparedQuery(
    lambda mark, n: RedactionAudit.insert_many(
        [[mark("audit", i, j) for j in range(len(_AUDIT_FIELDS))] for i in range(n)],
        fields=_AUDIT_FIELDS,
    )
)


def _scrubbed_values(product: str, row: tuple) -> tuple[tuple, list[str]]:
    """(id, account, sender, recipient, body, details) as the scrub writes them, and the
    names of the fields it scrubs."""
    sender, recipient, body, details = row[6:10]
    details = Transaction.details.python_value(details)
    names = scrubbed_fields(product, sender, recipient, body, details)
    if details:
        details = scrub_details(product, details)
    values = (
        row[0],
        row[1],
        *(None if v is None else REDACTED for v in (sender, recipient, body)),
        Transaction.details.db_value(details),
    )
    return values, names
