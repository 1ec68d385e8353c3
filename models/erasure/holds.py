"""Legal holds: records that nothing may redact (not the Redact API, not a job, not a
retention policy) until the hold is released.

A hold names records of its account by id, and phone numbers (subjects): every record
about a held number is held, including records that arrive after the hold. Numbers are
kept as their keyed hashes (models/store/keys.py), as the records index them, never in
clear. A released hold is kept, with its counts, for the audit trail.
"""

from __future__ import annotations

import datetime
import secrets
from collections.abc import Collection, Iterable
from typing import Any

import peewee

from models.erasure.audit import record_event
from models.errors import HoldNotFound, InvalidHold, RecordNotFound
from models.records.account import Account
from models.records.products import direction_of, record_kind
from models.records.transaction import Transaction
from models.store.base import BaseModel, UTCDateTimeField, database, find_owned, is_postgres
from models.store.keys import normalise_number
from models.store.pages import Page, newest_first
from models.store.prepared import PreparedQuery
from models.store.state import current_store
from models.webhooks.outbox import enqueue

STATUSES = ("active", "released")
TRANSACTION, SUBJECT = "transaction", "subject"


class LegalHold(BaseModel):
    """One hold. `seq` orders holds (newest first in lists); `id` is the public name."""

    seq = peewee.AutoField()
    id = peewee.CharField(max_length=40, unique=True)
    account = peewee.ForeignKeyField(
        Account, column_name="api_key", on_delete="CASCADE", object_id_name="account_id"
    )
    account_id: str
    reason = peewee.TextField()
    status = peewee.CharField(max_length=10, default="active")
    created = UTCDateTimeField()
    released = UTCDateTimeField(null=True)
    transactions = peewee.IntegerField()
    subjects = peewee.IntegerField()


class HoldItem(BaseModel):
    """What a hold covers: a record's id (`kind` transaction) or a number's keyed hash
    (`kind` subject). Found by (account, value), as a redaction looks them up."""

    hold = peewee.ForeignKeyField(LegalHold, on_delete="CASCADE", field="seq")
    api_key = peewee.CharField(max_length=64)
    kind = peewee.CharField(max_length=12)
    value = peewee.CharField(max_length=64)

    class Meta:
        indexes = ((("api_key", "value"), False),)


HOLD_MODELS = (LegalHold, HoldItem)


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
    with database.atomic():
        _lock_accounts([api_key], shared=False)
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


def covered_records(hold: LegalHold) -> int:
    """The account's unredacted records the hold covers."""
    values = HoldItem.select(HoldItem.value).where(HoldItem.hold == hold.seq)
    return (
        Transaction.select()
        .where(
            (Transaction.account == hold.account_id)
            & Transaction.redacted_at.is_null()
            & (
                Transaction.id.in_(values.where(HoldItem.kind == TRANSACTION))
                | Transaction.sender_key.in_(values.where(HoldItem.kind == SUBJECT))
                | Transaction.recipient_key.in_(values.where(HoldItem.kind == SUBJECT))
            )
        )
        .count()
    )


def held_records(candidates: Collection[tuple[str, str, str | None, str | None]]) -> set:
    """Which of `candidates` ((id, account, sender_key, recipient_key) of unredacted
    records) an active hold covers, as a set of (id, account). One indexed query for the
    lot: the redaction path calls it for every batch."""
    if not candidates:
        return set()
    accounts = sorted({c[1] for c in candidates})
    _lock_accounts(accounts, shared=True)
    # Most accounts hold nothing most of the time: a cheap look first, before the lookup
    # of every id and number of the batch.
    if not _ANY_ACTIVE.execute(len(accounts), {"account": accounts}).fetchone():
        return set()
    values = sorted({v for c in candidates for v in (c[0], c[2], c[3]) if v is not None})
    rows: list[Any] = list(
        HoldItem.select(HoldItem.api_key, HoldItem.kind, HoldItem.value)
        .join(LegalHold)
        .where(
            HoldItem.api_key.in_(accounts)
            & HoldItem.value.in_(values)
            & (LegalHold.status == "active")
        )
        .tuples()
    )
    if not rows:
        return set()
    held = {(account, kind, value) for account, kind, value in rows}
    return {
        (transaction_id, account)
        for transaction_id, account, sender_key, recipient_key in candidates
        if (account, TRANSACTION, transaction_id) in held
        or (sender_key is not None and (account, SUBJECT, sender_key) in held)
        or (recipient_key is not None and (account, SUBJECT, recipient_key) in held)
    }


def _lock_accounts(accounts: list[str], *, shared: bool) -> None:
    """On PostgreSQL, serialise creating a hold with the redactions of its account: a
    redaction takes a shared lock per account before it looks for holds, and keeps it to
    its commit; creating a hold takes the account's lock exclusively. Otherwise, under
    READ COMMITTED, a batch could look before the hold commits and scrub after, and the
    hold's creator would be told of a record that is then redacted. (SQLite serialises
    all writers already.)"""
    if not is_postgres():
        return
    lock = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    database.execute_sql(
        f"SELECT {lock}(hashtext('redact-hold:' || a)) FROM unnest(%s::text[]) AS a",
        (sorted(accounts),),
    )


_ANY_ACTIVE = PreparedQuery(
    lambda mark, n: (
        LegalHold.select(LegalHold.seq)
        .where(
            LegalHold.account.in_([mark("account", i) for i in range(n)])
            & (LegalHold.status == "active")
        )
        .limit(1)
    )
)


def held_condition(account: str):
    """A condition on Transaction: an active hold of `account` covers the record (for
    queries that skip held records, such as retention's)."""
    active = (
        HoldItem.select(HoldItem.value)
        .join(LegalHold)
        .where((HoldItem.api_key == account) & (LegalHold.status == "active"))
    )
    return (
        Transaction.id.in_(active.where(HoldItem.kind == TRANSACTION))
        | Transaction.sender_key.in_(active.where(HoldItem.kind == SUBJECT))
        | Transaction.recipient_key.in_(active.where(HoldItem.kind == SUBJECT))
    )
