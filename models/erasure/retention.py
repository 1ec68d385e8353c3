"""Auto-redact: the retention pass, which redacts records once their retention is over
(the policies are models/erasure/policies.py), one worker at a time under a lease.

The pass (`run_retention`) redacts, batch by batch, the records older than their
retention, and never one younger than the premature window. Each batch is one atomic
redaction, audited with source `retention`; a held record is skipped and counted. A pass
killed at any point loses nothing: what it redacted is committed, and the next pass goes
on with what is left (records leave the partial index of unredacted records as they are
redacted).
"""

from __future__ import annotations

import dataclasses
import datetime
import secrets
import time
from collections.abc import Callable
from typing import Any

import peewee

from models.erasure.held import held_condition
from models.erasure.policies import RetentionPolicy, due_condition, retention_cutoff
from models.erasure.redaction import RedactionRequest, redact_batch
from models.records.account import Account
from models.records.transaction import Transaction
from models.store.base import BaseModel, Clock, UTCDateTimeField, database
from models.store.state import current_store
from models.webhooks.outbox import enqueue


class WorkerLease(BaseModel):
    """Work that one worker at a time does (the retention pass): who holds it, until when."""

    name = peewee.CharField(primary_key=True, max_length=40)
    owner = peewee.CharField(max_length=200)
    expires = UTCDateTimeField()


RETENTION_MODELS = (RetentionPolicy, WorkerLease)


@dataclasses.dataclass
class RetentionReport:
    redacted: int = 0
    held: int = 0
    finished: bool = True
    """False when the pass stopped for its time budget with records left."""
    accounts: dict[str, AccountReport] = dataclasses.field(default_factory=dict)
    """What the pass did for each account, for its own webhook event."""

    def of(self, account: str) -> AccountReport:
        return self.accounts.setdefault(account, AccountReport())


@dataclasses.dataclass
class AccountReport:
    redacted: dict[str, int] = dataclasses.field(default_factory=dict)
    """Records redacted, by product."""
    held: int = 0


LEASE = "retention"


def run_retention(
    *,
    clock: Clock,
    min_age_seconds: int,
    batch_size: int,
    owner: str,
    budget_seconds: float | None = None,
    lease_seconds: int = 60,
    monotonic: Callable[[], float] = time.monotonic,
    progress: Callable[[int], None] | None = None,
) -> RetentionReport | None:
    """One pass over the policies: redact what is past retention. Returns None if another
    worker's pass holds the lease; stops early (`finished` False) once `budget_seconds`
    have passed, so that other work queued meanwhile has its turn.

    The policies take turns, a batch each, so that one account's large backlog does not
    keep another's waiting. Held records are left out of the batches (and counted once
    per policy), so that they never stand in the way of the rest. Besides `after`
    policies, `immediate` ones are passed too: a record a hold kept from being redacted on
    arrival is redacted once the hold is released (not within the premature window).
    `progress`, if given, is called with the records redacted so far after each batch."""
    if not _claim(owner, clock(), lease_seconds):
        return None
    started = monotonic()
    report = RetentionReport()
    settings = _Pass(min_age_seconds, batch_size, owner, lease_seconds)
    try:
        turns = [_Turn(policy) for policy in _policies_to_pass()]
        for turn in turns:
            due = due_condition(turn.account, turn.product, turn.cutoff(clock(), min_age_seconds))
            held = Transaction.select().where(due & held_condition(turn.account)).count()
            report.held += held
            report.of(turn.account).held += held
        while turns:
            for turn in list(turns):
                if budget_seconds is not None and monotonic() - started > budget_seconds:
                    report.finished = False
                    _end_pass(owner, report, clock())
                    return report
                redacted = _one_batch(turn, clock(), settings)
                if redacted is None:
                    turns.remove(turn)
                else:
                    report.redacted += redacted
                    if progress is not None:
                        progress(report.redacted)
                    products = report.of(turn.account).redacted
                    products[turn.product] = products.get(turn.product, 0) + redacted
        _end_pass(owner, report, clock())
        return report
    finally:
        _release(owner)


def _end_pass(owner: str, report: RetentionReport, now: datetime.datetime) -> None:
    """Give the lease back, with a `retention.completed` webhook event for each account
    the pass (or this slice of it) redacted records of: its own counts only."""
    with database.atomic():
        for account, done in sorted(report.accounts.items()):
            redacted = sum(done.redacted.values())
            if redacted:
                data = {
                    "retention": {
                        "redacted": redacted,
                        "held": done.held,
                        "products": dict(sorted(done.redacted.items())),
                        "finished": report.finished,
                    }
                }
                enqueue(account, "retention.completed", data, "retention", now)
        _release(owner)


def _policies_to_pass() -> list[RetentionPolicy]:
    policies = RetentionPolicy.select().where(RetentionPolicy.mode.in_(("after", "immediate")))
    return [
        policy
        for policy in policies
        if policy.product in Account.get_by_id(policy.account_id).product_set
    ]


class _Turn:
    """Where a policy's part of a pass stands: its keyset cursor (created_at, id)."""

    def __init__(self, policy: RetentionPolicy):
        self.account, self.product = policy.account_id, policy.product
        self.mode, self.days = policy.mode, policy.days
        self.after: tuple | None = None

    def cutoff(self, now: datetime.datetime, min_age_seconds: int) -> datetime.datetime:
        return retention_cutoff(now, self.days, min_age_seconds)


@dataclasses.dataclass(frozen=True)
class _Pass:
    """What every batch of one pass shares: its settings, its lease's holder and the trace
    id its redactions are audited under."""

    min_age_seconds: int
    batch_size: int
    owner: str
    lease_seconds: int
    trace_id: str = dataclasses.field(default_factory=lambda: "retention:" + secrets.token_hex(8))


def _one_batch(turn: _Turn, now: datetime.datetime, settings: _Pass) -> int | None:
    """Redact the policy's next batch; how many were redacted, or None when it has none
    left (or the policy changed since the pass began)."""
    query = Transaction.select(Transaction.id, Transaction.direction, Transaction.created_at).where(
        due_condition(turn.account, turn.product, turn.cutoff(now, settings.min_age_seconds))
        & ~held_condition(turn.account)
    )
    if turn.after is not None:
        query = query.where(
            peewee.Tuple(Transaction.created_at, Transaction.id) > peewee.Tuple(*turn.after)
        )
    # Raw rows, as the database returns them: `created_at` goes back into the cursor as it
    # came, unparsed (parsing a batch's times cost a fifth of the pass).
    query = query.order_by(Transaction.created_at, Transaction.id).limit(settings.batch_size)
    rows: list[Any] = database.execute(query).fetchall()
    if not rows:
        return None
    requests = [
        RedactionRequest(
            turn.account,
            transaction_id,
            turn.product,
            direction,
            now,
            settings.min_age_seconds,
            settings.trace_id,
            "retention",
        )
        for transaction_id, direction, _ in rows
    ]
    outcomes = current_store().group_commit.run(
        _retention_batches, _Batch(turn, requests, now, settings)
    )
    if outcomes is None:
        return None
    turn.after = (rows[-1][2], rows[-1][0])
    return sum(1 for outcome in outcomes if outcome is True)


@dataclasses.dataclass
class _Batch:
    turn: _Turn
    requests: list[RedactionRequest]
    now: datetime.datetime
    settings: _Pass


def _retention_batches(batches: list[_Batch]) -> list:
    """Group-commit batch function: each batch's redactions, in a savepoint, with the
    lease renewed in the same transaction; None for a batch whose policy is no longer
    the one the pass began with (changed meanwhile: nothing is redacted)."""
    outcomes: list = []
    for batch in batches:
        with database.atomic():
            if not _unchanged(batch.turn):
                outcomes.append(None)
                continue
            _renew(batch.settings.owner, batch.now, batch.settings.lease_seconds)
            outcomes.append(redact_batch(batch.requests))
    return outcomes


def _unchanged(turn: _Turn) -> bool:
    policy = RetentionPolicy.get_or_none(
        (RetentionPolicy.account == turn.account) & (RetentionPolicy.product == turn.product)
    )
    return policy is not None and (policy.mode, policy.days) == (turn.mode, turn.days)


def _claim(owner: str, now: datetime.datetime, seconds: int) -> bool:
    expires = now + datetime.timedelta(seconds=seconds)
    with database.atomic():
        WorkerLease.insert(name=LEASE, owner=owner, expires=expires).on_conflict_ignore().execute()
        taken = (
            WorkerLease.update(owner=owner, expires=expires)
            .where(
                (WorkerLease.name == LEASE)
                & ((WorkerLease.expires < now) | (WorkerLease.owner == owner))
            )
            .execute()
        )
    return taken == 1


def _renew(owner: str, now: datetime.datetime, seconds: int) -> None:
    WorkerLease.update(expires=now + datetime.timedelta(seconds=seconds)).where(
        (WorkerLease.name == LEASE) & (WorkerLease.owner == owner)
    ).execute()


def _release(owner: str) -> None:
    WorkerLease.delete().where((WorkerLease.name == LEASE) & (WorkerLease.owner == owner)).execute()
