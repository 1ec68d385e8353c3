"""What legal holds hold: their tables, and whether one keeps a record from being redacted.

A hold names records of its account by id, and phone numbers (subjects): every record
about a held number is held, including records that arrive after the hold. Numbers are
kept as their keyed hashes (models/store/keys.py), as the records index them, never in
clear. `held_records` is a redaction's check, `held_condition` the filter of the retention
pass and of a job's validation, `lock_accounts` what orders a hold's creation and the
redactions of its account on PostgreSQL. Creating and releasing holds is
models/erasure/holds.py.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import peewee

from models.records.account import Account
from models.records.transaction import Transaction
from models.store.base import BaseModel, UTCDateTimeField, is_postgres
from models.store.prepared import PreparedQuery, Statement, run_together

STATUSES = ("active", "released")
TRANSACTION, SUBJECT = "transaction", "subject"


# seq, public id and account, as every table an account owns declares them.
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
    # Most accounts hold nothing most of the time: a cheap look first, before the lookup
    # of every id and number of the batch; after the accounts' locks (a statement of its
    # own, so it sees what committed before they were granted).
    locks = account_locks(accounts, shared=True)
    if not _ANY_ACTIVE.execute(len(accounts), {"account": accounts}, after=locks).fetchone():
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


def lock_accounts(accounts: list[str], *, shared: bool) -> None:
    """On PostgreSQL, serialise creating a hold with the redactions of its account: a
    redaction takes a shared lock per account before it looks for holds, and keeps it to
    its commit; creating a hold takes the account's lock exclusively. Otherwise, under
    READ COMMITTED, a batch could look before the hold commits and scrub after, and the
    hold's creator would be told of a record that is then redacted. (SQLite serialises
    all writers already.)"""
    run_together(account_locks(accounts, shared=shared))


def account_locks(accounts: list[str], *, shared: bool) -> list[Statement]:
    """The statement `lock_accounts` runs (none on SQLite)."""
    if not is_postgres():
        return []
    lock = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    sql = f"SELECT {lock}(hashtext('redact-hold:' || a)) FROM unnest(%s::text[]) AS a"
    return [(sql, [sorted(accounts)])]


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
