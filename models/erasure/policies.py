"""Retention policies per account and product, and what they leave to do.

A policy is `off` (the default: records stay until someone redacts them), `immediate`
(a record is stored already redacted: models/intake/storing.py) or `after` N days. Setting
one is audited with what it was before; the backlog is what is past retention and not yet
redacted (the pass that redacts it is models/erasure/retention.py).
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from typing import Any

import peewee

from models.erasure.audit import record_event
from models.erasure.held import held_condition
from models.errors import InvalidPolicy, Unprovisioned
from models.records.account import Account
from models.records.transaction import Transaction
from models.store.base import BaseModel, UTCDateTimeField, database

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


def due_condition(account: str, product: str, cutoff: datetime.datetime):
    """The account's records of `product` created by `cutoff` and not yet redacted."""
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
        due = due_condition(
            policy.account_id,
            policy.product,
            retention_cutoff(now, policy.days, min_age_seconds),
        )
        found[(policy.account_id, policy.product)] = Backlog(
            Transaction.select().where(due).count(),
            Transaction.select().where(due & held_condition(policy.account_id)).count(),
        )
    return found


def retention_lag(now: datetime.datetime, min_age_seconds: int) -> dict[str, float]:
    """By product, how long (seconds) the record that has waited longest past its retention
    has been due, among those the retention pass redacts (no hold keeps them); 0 when none
    waits. The pass runs every minute, so while it keeps up this stays near a minute."""
    lag: dict[str, float] = {}
    query = RetentionPolicy.select().where(RetentionPolicy.mode.in_(("after", "immediate")))
    for policy in query:
        cutoff = retention_cutoff(now, policy.days, min_age_seconds)
        oldest = (
            Transaction.select(Transaction.created_at)
            .where(
                due_condition(policy.account_id, policy.product, cutoff)
                & ~held_condition(policy.account_id)
            )
            .order_by(Transaction.created_at)
            .first()
        )
        waited = (cutoff - oldest.created_at).total_seconds() if oldest else 0.0
        lag[policy.product] = max(lag.get(policy.product, 0.0), waited)
    return lag


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
