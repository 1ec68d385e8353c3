"""Redacting transactions: the rules (provisioning, ownership, legal holds, the premature
window) and the scrub itself, atomic, audited and erased from the database files.

Concurrent requests are redacted together: each batch is one SELECT, one UPDATE and one
INSERT in one transaction (see GroupCommit), so the cost of a commit and of the
statements is shared.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Collection

from models.erasure.held import held_records
from models.erasure.settling import intent_json, settle_later
from models.erasure.statements import (
    FIND,
    Found,
    RedactionRequest,
    scrub_and_audit,
    scrubbed_values,
)
from models.errors import PrematureRedaction, RecordHeld, RecordNotFound, Unprovisioned
from models.records.products import direction_of, record_kind
from models.records.transaction import Transaction
from models.store.state import current_store


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
    """`redact_transaction` for a coroutine (the Redact API's): it awaits the erasure
    without holding a thread, and returns as soon as the record's key is destroyed,
    durably, with the redaction's intent (see `redact_acknowledged`); the scrub and its
    audit entry commit together a moment later."""
    return await current_store().group_commit.run_async(
        redact_acknowledged, redaction_request(**request)
    )


ANSWERED_EARLY_AT_MOST = 4
"""The largest batch whose callers hear before its commit. A larger batch is one under
load, where the next batch waits for this commit anyway: answering early gained nothing
there, and cost a fifth of the throughput (bench/README.md, "Answering at the key's
destruction"), the early answers' work competing with the commit for the interpreter."""


def redact_acknowledged(requests: list[RedactionRequest]) -> list:
    """`redact_batch`, whose outcomes its callers hear once the keys are destroyed,
    before the scrub commits: the key store keeps each redaction's intent with the
    destroy, until the scrub has committed (models/store/pending.py), so a crash between
    the two loses nothing (models/erasure/settling.py completes it). A batch that
    scrubs a record with no key (stored before sealing) is told after the commit, its
    scrub being its erasure; so is a batch of more than ANSWERED_EARLY_AT_MOST, which
    keeps no intents."""
    return prepare_acknowledged(requests)()


def prepare_acknowledged(requests: list[RedactionRequest]) -> Callable[[], list]:
    """`redact_acknowledged` in two steps (`GroupCommit`'s `prepare`): this one checks the
    records and begins destroying their keys; the one it returns scrubs, audits and
    tells, in the transaction it runs in, which may be the one after this step's."""
    if len(requests) > ANSWERED_EARLY_AT_MOST:
        return prepare_batch(requests)
    intents: dict[str | None, RedactionRequest] = {}
    scrub = prepare_batch(requests, intents=intents)

    def finish() -> list:
        outcomes = scrub()
        group_commit = current_store().group_commit
        if None not in intents:
            group_commit.tell_before_commit()
        keys = [key for key in intents if key is not None]
        if keys:
            group_commit.after_transaction(settle_later(keys))
        return outcomes

    return finish


redact_acknowledged.prepare = prepare_acknowledged  # type: ignore[attr-defined]


def redact_batch(
    requests: list[RedactionRequest],
    positions: list[int] | None = None,
    intents: dict[str | None, RedactionRequest] | None = None,
) -> list:
    """Redact `requests` inside the caller's transaction; one outcome per request: True
    (scrubbed now), False (already redacted) or the exception saying why not. Each
    scrub is audited and appended to its account's erasure log (models/erasure/scrub.py); the
    log positions are added to `positions` if given. With `intents`, each destroyed key's
    request is added to it and stored with the destroy (models/store/pending.py), and a
    record scrubbed with no key to destroy is added under None."""
    return prepare_batch(requests, positions, intents)()


def prepare_batch(
    requests: list[RedactionRequest],
    positions: list[int] | None = None,
    intents: dict[str | None, RedactionRequest] | None = None,
) -> Callable[[], list]:
    """`redact_batch`'s first step: the checks, and the keys' destruction begun (and the
    intents filled in); it returns the second, the scrub and its audit, which waits for
    the keys to be gone and gives the outcomes."""
    ids = sorted({r.transaction_id for r in requests})
    found = list(map(Found._make, FIND.execute(len(ids), {"id": ids}).fetchall()))
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
            to_scrub[name], fields[name] = scrubbed_values(request.product, row)
            outcomes.append(True)
    if not to_scrub:
        return lambda: outcomes

    # The keys are destroyed, durably, before this transaction commits: once they are
    # gone no copy of these records opens, and a crash before the scrub commits leaves
    # nothing readable (the retry scrubs, or the intents kept with the destroy are
    # completed). The key store commits in its own thread while the scrub's statements
    # run here.
    keys = {name: rows[name].key_id for name in to_scrub}
    stored = None
    if intents is not None:
        for index, request in enumerate(requests):
            if outcomes[index] is True:
                intents[keys[(request.transaction_id, request.api_key)] or None] = request
        stored = {key: intent_json(r) for key, r in intents.items() if key is not None}
    destroying = current_store().keystore.destroying(
        [key for key in keys.values() if key], max(r.now for r in requests), stored
    )

    def finish() -> list:
        try:
            scrub_and_audit(requests, outcomes, to_scrub, fields, keys, positions)
        finally:
            destroying.result()  # raises if the keys are not destroyed: nothing commits then
        return outcomes

    return finish


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
