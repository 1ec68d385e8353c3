"""Auto-redact: retention policies per account and product, and the pass that redacts
records once their retention is over.

A policy is `off` (the default: records stay until someone redacts them), `immediate`
(a record is stored already redacted: models/intake/records.py) or `after` N days. The pass
(`run_retention`) redacts, batch by batch, the records older than their retention, and
never one younger than the premature window. Each batch is one atomic redaction, audited
with source `retention`; a held record is skipped and counted. A pass killed at any point
loses nothing: what it redacted is committed, and the next pass goes on with what is left
(records leave the partial index of unredacted records as they are redacted).
"""

from __future__ import annotations

import dataclasses
import datetime
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

import peewee

from models.erasure.audit import record_event
from models.erasure.holds import held_condition
from models.erasure.redaction import RedactionRequest, redact_batch
from models.errors import InvalidPolicy, Unprovisioned
from models.records.account import Account
from models.records.transaction import Transaction
from models.store.base import BaseModel, Clock, UTCDateTimeField, database
from models.store.state import current_store
from models.webhooks.outbox import enqueue

MODES = ("off", "immediate", "after")
MAX_AFTER_DAYS = 3650


class RetentionPolicy(BaseModel):
    """An account's policy for one product (no row: `off`)."""

    account = peewee.ForeignKeyField(
        Account, column_name="api_key", on_delete="CASCADE", object_id_name="account_id"
    )
    account_id: str
    product = peewee.CharField(max_length=20)
    mode = peewee.CharField(max_length=10)
    after_days = peewee.IntegerField(null=True)
    updated = UTCDateTimeField()

    class Meta:
        primary_key = peewee.CompositeKey("account", "product")

    @property
    def days(self) -> int:
        """The retention in days (0 for `immediate`)."""
        return int(self.after_days or 0)


class WorkerLease(BaseModel):
    """Work that one worker at a time does (the retention pass): who holds it, until when."""

    name = peewee.CharField(primary_key=True, max_length=40)
    owner = peewee.CharField(max_length=200)
    expires = UTCDateTimeField()


RETENTION_MODELS = (RetentionPolicy, WorkerLease)


@dataclasses.dataclass(frozen=True)
class Policy:
    auto_redact: str = "off"
    after_days: int | None = None

    def as_dict(self) -> dict:
        return {"auto_redact": self.auto_redact, "after_days": self.after_days}


def policies_of(api_key: str) -> dict[str, Policy]:
    """The account's policy for each product it may redact (`off` where none is set)."""
    account = Account.get_by_id(api_key)
    stored = {
        p.product: Policy(p.mode, p.after_days)
        for p in RetentionPolicy.select().where(RetentionPolicy.account == api_key)
    }
    return {product: stored.get(product, Policy()) for product in sorted(account.product_set)}


def arrival_policies(accounts: list[str]) -> set[tuple[str, str]]:
    """(account, product) pairs whose records are redacted on arrival (`immediate`)."""
    rows: list[Any] = list(
        RetentionPolicy.select(RetentionPolicy.account, RetentionPolicy.product)
        .where(RetentionPolicy.account.in_(accounts) & (RetentionPolicy.mode == "immediate"))
        .tuples()
    )
    return {(account, product) for account, product in rows}


def set_policies(
    api_key: str,
    changes: Mapping[str, Mapping[str, Any]],
    *,
    now: datetime.datetime,
    actor: str,
    trace_id: str | None = None,
) -> dict[str, Policy]:
    """Change the account's policies for the products in `changes` ({product:
    {"auto_redact", "after_days"}}), each change audited with what it was before. All or
    nothing: InvalidPolicy or Unprovisioned (a product the account may not redact)."""
    wanted = {product: _policy(product, change) for product, change in changes.items()}
    with database.atomic():
        current = policies_of(api_key)
        for product in wanted:
            if product not in current:
                raise Unprovisioned(api_key, product)
        for product, policy in wanted.items():
            if policy == current[product]:
                continue
            (
                RetentionPolicy.insert(
                    account=api_key,
                    product=product,
                    mode=policy.auto_redact,
                    after_days=policy.after_days,
                    updated=now,
                )
                .on_conflict(
                    conflict_target=[RetentionPolicy.account, RetentionPolicy.product],
                    update={
                        RetentionPolicy.mode: policy.auto_redact,
                        RetentionPolicy.after_days: policy.after_days,
                        RetentionPolicy.updated: now,
                    },
                )
                .execute()
            )
            record_event(
                api_key=api_key,
                action="policy.changed",
                target=product,
                at=now,
                actor=actor,
                before=current[product].as_dict(),
                after=policy.as_dict(),
                trace_id=trace_id,
            )
        return policies_of(api_key)


def _policy(product: str, change: Mapping[str, Any]) -> Policy:
    mode = change.get("auto_redact")
    days = change.get("after_days")
    if mode not in MODES:
        raise InvalidPolicy(f"{product}: auto_redact is one of {', '.join(MODES)}")
    if mode == "after":
        if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= MAX_AFTER_DAYS:
            raise InvalidPolicy(
                f"{product}: auto_redact 'after' needs after_days, 1 to {MAX_AFTER_DAYS}"
            )
        return Policy(mode, days)
    if days is not None:
        raise InvalidPolicy(f"{product}: after_days goes only with auto_redact 'after'")
    return Policy(mode)


def retention_cutoff(
    now: datetime.datetime, after_days: int, min_age_seconds: int
) -> datetime.datetime:
    """Records created up to this moment are past their retention (never younger than the
    premature window)."""
    return now - max(
        datetime.timedelta(days=after_days), datetime.timedelta(seconds=min_age_seconds)
    )


def _due(account: str, product: str, cutoff: datetime.datetime):
    return (
        (Transaction.account == account)
        & (Transaction.product == product)
        & Transaction.redacted_at.is_null()
        & (Transaction.created_at <= cutoff)
    )


@dataclasses.dataclass
class Backlog:
    due: int = 0
    """Records past their retention, not yet redacted (held ones included)."""
    held: int = 0
    """Of those, the ones a legal hold keeps."""


def backlog(
    now: datetime.datetime, min_age_seconds: int, api_key: str | None = None
) -> dict[tuple[str, str], Backlog]:
    """Records past retention and not yet redacted, by (account, product) of each `after`
    or `immediate` policy (of `api_key` only, if given). Under `immediate` they are the
    records a hold kept from being redacted on arrival."""
    query = RetentionPolicy.select().where(RetentionPolicy.mode.in_(("after", "immediate")))
    if api_key is not None:
        query = query.where(RetentionPolicy.account == api_key)
    found = {}
    for policy in query:
        due = _due(
            policy.account_id,
            policy.product,
            retention_cutoff(now, policy.days, min_age_seconds),
        )
        found[(policy.account_id, policy.product)] = Backlog(
            Transaction.select().where(due).count(),
            Transaction.select().where(due & held_condition(policy.account_id)).count(),
        )
    return found


def policies_shown(api_key: str, now: datetime.datetime, min_age_seconds: int) -> dict:
    """The account's policies as the API and the CLI show them: each product's policy
    with its backlog (records past retention, not yet redacted) and how many of those
    are held."""
    due = backlog(now, min_age_seconds, api_key)
    products = {}
    for product, policy in policies_of(api_key).items():
        waiting = due.get((api_key, product), Backlog())
        products[product] = {**policy.as_dict(), "backlog": waiting.due, "held": waiting.held}
    return {"object": "retention_policies", "products": products}


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
) -> RetentionReport | None:
    """One pass over the policies: redact what is past retention. Returns None if another
    worker's pass holds the lease; stops early (`finished` False) once `budget_seconds`
    have passed, so that other work queued meanwhile has its turn.

    The policies take turns, a batch each, so that one account's large backlog does not
    keep another's waiting. Held records are left out of the batches (and counted once
    per policy), so that they never stand in the way of the rest. Besides `after`
    policies, `immediate` ones are passed too: a record a hold kept from being redacted on
    arrival is redacted once the hold is released (not within the premature window)."""
    if not _claim(owner, clock(), lease_seconds):
        return None
    started = monotonic()
    report = RetentionReport()
    trace_id = "retention:" + secrets.token_hex(8)
    try:
        turns = [_Turn(policy) for policy in _policies_to_pass()]
        for turn in turns:
            due = _due(turn.account, turn.product, turn.cutoff(clock(), min_age_seconds))
            held = Transaction.select().where(due & held_condition(turn.account)).count()
            report.held += held
            report.of(turn.account).held += held
        while turns:
            for turn in list(turns):
                if budget_seconds is not None and monotonic() - started > budget_seconds:
                    report.finished = False
                    _end_pass(owner, report, clock())
                    return report
                redacted = _one_batch(turn, clock(), min_age_seconds, batch_size, owner,
                                      lease_seconds, trace_id)  # fmt: skip
                if redacted is None:
                    turns.remove(turn)
                else:
                    report.redacted += redacted
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


def _one_batch(turn, now, min_age_seconds, batch_size, owner, lease_seconds, trace_id):
    """Redact the policy's next batch; how many were redacted, or None when it has none
    left (or the policy changed since the pass began)."""
    query = Transaction.select(Transaction.id, Transaction.direction, Transaction.created_at).where(
        _due(turn.account, turn.product, turn.cutoff(now, min_age_seconds))
        & ~held_condition(turn.account)
    )
    if turn.after is not None:
        query = query.where(
            peewee.Tuple(Transaction.created_at, Transaction.id) > peewee.Tuple(*turn.after)
        )
    rows: list[Any] = list(
        query.order_by(Transaction.created_at, Transaction.id).limit(batch_size).tuples()
    )
    if not rows:
        return None
    requests = [
        RedactionRequest(
            turn.account,
            transaction_id,
            turn.product,
            direction,
            now,
            min_age_seconds,
            trace_id,
            "retention",
        )
        for transaction_id, direction, _ in rows
    ]
    outcomes = current_store().group_commit.run(
        _retention_batches, _Batch(turn, requests, owner, now, lease_seconds)
    )
    if outcomes is None:
        return None
    turn.after = (Transaction.created_at.db_value(rows[-1][2]), rows[-1][0])
    return sum(1 for outcome in outcomes if outcome is True)


@dataclasses.dataclass
class _Batch:
    turn: _Turn
    requests: list[RedactionRequest]
    owner: str
    now: datetime.datetime
    lease_seconds: int


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
            _renew(batch.owner, batch.now, batch.lease_seconds)
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
