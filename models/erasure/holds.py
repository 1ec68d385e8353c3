"""Legal holds: records that nothing may redact (not the Redact API, not a job, not a
retention policy) until the hold is released. Creating, releasing, finding, listing and
showing an account's holds; their tables and what they keep are models/erasure/held.py.
A released hold is kept, with its counts, for the audit trail.
"""

from __future__ import annotations

import datetime
import secrets
from collections.abc import Iterable
from typing import Any

from models.erasure.audit import record_event
from models.erasure.held import (
    SUBJECT,
    TRANSACTION,
    HoldItem,
    LegalHold,
    covered_records,
    lock_accounts,
)
from models.errors import HoldNotFound, InvalidHold, RecordNotFound
from models.records.products import direction_of, record_kind
from models.records.transaction import Transaction
from models.store.base import database, find_owned
from models.store.keys import normalise_number
from models.store.pages import Page, newest_first
from models.store.state import current_store
from models.webhooks.outbox import enqueue


def new_hold_id() -> str:
    return "hold_" + secrets.token_hex(12)


def create_hold(
    *,
    api_key: str,
    subjects: Iterable[str],
    transactions: Iterable[dict],
    reason: str,
    now: datetime.datetime,
    actor: str,
    trace_id: str | None = None,
) -> LegalHold:
    """Hold the account's records named in `transactions` ({"id", "product", "type"}) and
    every record about the numbers in `subjects`; audited, its webhook event written with
    it. Raises InvalidHold (nothing
    named, a subject that is no phone number) or RecordNotFound (a record the account
    does not hold: another account's is not revealed), and stores nothing then."""
    key = current_store().subject_key
    hashes: dict[str, None] = {}
    for index, subject in enumerate(subjects):
        if normalise_number(subject) is None:
            raise InvalidHold(f"subjects[{index}]: {subject!r} is not a phone number")
        hashes[key.hash(subject) or ""] = None
    named = {
        t["id"]: (t["product"], direction_of(t["product"], t.get("type"))) for t in transactions
    }
    if not hashes and not named:
        raise InvalidHold("a hold names at least one subject or transaction")
    # Not between the checks of a redaction prepared ahead and its scrub (SQLite; on
    # PostgreSQL the account's lock serialises the two).
    with current_store().writers_excluded(), database.atomic():
        lock_accounts([api_key], shared=False)
        _check_records(api_key, named)
        hold = LegalHold.create(
            id=new_hold_id(),
            account=api_key,
            reason=reason,
            created=now,
            transactions=len(named),
            subjects=len(hashes),
        )
        items = [(hold.seq, api_key, TRANSACTION, i) for i in named] + [
            (hold.seq, api_key, SUBJECT, h) for h in hashes
        ]
        fields = (HoldItem.hold, HoldItem.api_key, HoldItem.kind, HoldItem.value)
        for start in range(0, len(items), 500):
            HoldItem.insert_many(items[start : start + 500], fields=fields).execute()
        record_event(
            api_key=api_key,
            action="hold.created",
            target=hold.id,
            at=now,
            actor=actor,
            after={"transactions": len(named), "subjects": len(hashes), "reason": reason},
            trace_id=trace_id,
        )
        enqueue(api_key, "hold.created", hold_event_data(hold), f"hold:{hold.id}", now)
    return hold


def _check_records(api_key: str, named: dict[str, tuple[str, str | None]]) -> None:
    ids = list(named)
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        rows: list[Any] = list(
            Transaction.select(Transaction.id, Transaction.product, Transaction.direction)
            .where((Transaction.account == api_key) & Transaction.id.in_(chunk))
            .tuples()
        )
        found = {
            transaction_id: (product, direction) for transaction_id, product, direction in rows
        }
        for transaction_id in chunk:
            if found.get(transaction_id) != named[transaction_id]:
                product, direction = named[transaction_id]
                raise RecordNotFound(transaction_id, record_kind(product, direction))


def release_hold(
    hold_id: str, api_key: str, *, now: datetime.datetime, actor: str, trace_id: str | None = None
) -> LegalHold:
    """Release the account's hold (HoldNotFound otherwise): what it held may be redacted
    again. Audited; releasing a released hold changes nothing."""
    with database.atomic():
        hold = find_hold(hold_id, api_key)
        if hold.status == "released":
            return hold
        LegalHold.update(status="released", released=now).where(LegalHold.seq == hold.seq).execute()
        record_event(
            api_key=hold.account_id,
            action="hold.released",
            target=hold.id,
            at=now,
            actor=actor,
            before={"status": "active"},
            after={"status": "released"},
            trace_id=trace_id,
        )
        released = find_hold(hold_id, api_key)
        enqueue(hold.account_id, "hold.released", hold_event_data(released), f"hold:{hold.id}", now)
    return released


def hold_event_data(hold: LegalHold) -> dict:
    """A hold as its webhook events show it: id, status and counts (not its reason, which
    may name a person)."""
    return {
        "hold": {
            "id": hold.id,
            "status": hold.status,
            "counts": {"transactions": hold.transactions, "subjects": hold.subjects},
        }
    }


def find_hold(hold_id: str, api_key: str | None = None) -> LegalHold:
    """The hold `hold_id` of account `api_key` (None: any, for operators); HoldNotFound for
    an unknown id or another account's hold."""
    return find_owned(LegalHold, hold_id, api_key, HoldNotFound)


# As list_jobs and list_webhooks: each domain pages its own table through newest_first.
def list_holds(
    api_key: str,
    *,
    limit: int,
    starting_after: str | None = None,
    ending_before: str | None = None,
    status: str | None = None,
) -> Page:
    """The account's holds, newest first, a page at a time (cursors as jobs take them)."""
    return newest_first(LegalHold, api_key, limit, starting_after, ending_before, status)


def hold_resource(hold: LegalHold) -> dict:
    """A hold as the API and the CLI show it, with how many unredacted records it covers
    now (records that arrive later about a held number are counted as they come)."""
    return {
        "id": hold.id,
        "object": "legal_hold",
        "status": hold.status,
        "reason": hold.reason,
        "created": int(hold.created.timestamp()),
        "released": None if hold.released is None else int(hold.released.timestamp()),
        "counts": {
            "transactions": hold.transactions,
            "subjects": hold.subjects,
            "records": covered_records(hold) if hold.status == "active" else 0,
        },
    }
