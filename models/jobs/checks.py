"""What validating a job reads of its transaction objects, a batch at a time: each object,
the record it names (if any) and whether another holding job names it too, as one
prepared query (models/jobs/validation.py judges them).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import peewee
from peewee import JOIN, fn

from models.jobs.job import HOLDING, JobObject, RedactionJob
from models.jobs.records import page_after
from models.records.transaction import Transaction
from models.store.prepared import PreparedQuery


class Checked(NamedTuple):
    """A transaction object of the job, as `_CHECKS` reads it: the object, the record it
    names (`found` is its id, None if there is none) and whether another holding job names
    it too."""

    position: int
    transaction_id: str
    product: str
    direction: str | None
    found: str | None
    account: str | None
    found_product: str | None
    found_direction: str | None
    created_at: Any
    redacted_at: Any
    held: bool
    sender_key: str | None
    recipient_key: str | None


def transaction_checks(job: RedactionJob, after: int, limit: int):
    """For each transaction object after position `after`: the object, the record it
    names (if any), and whether another holding job names it too."""
    rows = _CHECKS.execute(
        None,
        {
            "job": job.seq,
            "account": job.account_id,
            "holder": job.account_id,
            "after": after,
            "limit": limit,
        },
    )
    convert = Transaction.created_at.python_value
    # Built whole from the unpacked row, not _make()'d and _replace()'d: three times
    # faster, and a job's validation reads every one of its objects.
    for (
        position,
        transaction_id,
        product,
        direction,
        found,
        account,
        found_product,
        found_direction,
        created_at,
        redacted_at,
        held,
        sender_key,
        recipient_key,
    ) in rows:
        yield Checked(
            position,
            transaction_id,
            product,
            direction or None,
            found,
            account,
            found_product,
            found_direction,
            convert(created_at),
            redacted_at,
            held,
            sender_key,
            recipient_key,
        )


def _build_checks(mark, _):
    other = JobObject.alias()
    holder = RedactionJob.alias()
    held = (
        other.select(peewee.SQL("1"))
        .join(holder, on=(other.job == holder.seq))
        .where(
            (other.transaction_id == JobObject.transaction_id)
            & (other.job != JobObject.job)
            & (holder.account == mark("holder"))
            & holder.status.in_(HOLDING)
        )
    )
    return page_after(
        JobObject.select(
            JobObject.position,
            JobObject.transaction_id,
            JobObject.product,
            JobObject.direction,
            Transaction.id,
            Transaction.account,
            Transaction.product,
            Transaction.direction,
            Transaction.created_at,
            Transaction.redacted_at,
            fn.EXISTS(held),
            Transaction.sender_key,
            Transaction.recipient_key,
        ).join(
            Transaction,
            JOIN.LEFT_OUTER,
            on=(
                (Transaction.id == JobObject.transaction_id)
                & (Transaction.account == mark("account"))
            ),
        ),
        mark,
    )


# Run for every batch of a job: built once (see PreparedQuery), rows read raw.
_CHECKS = PreparedQuery(_build_checks)
