"""Validating a job: which of its objects can be redacted, and when."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import peewee
from peewee import JOIN, fn

from models.erasure.holds import held_condition, held_records
from models.errors import PrematureRedaction, RecordHeld, RecordNotFound, Unprovisioned
from models.jobs.job import HOLDING, JobObject, JobValidationError, RedactionJob, transition
from models.jobs.lease import WorkConfig, renew
from models.jobs.records import subject_records
from models.records.account import Account
from models.records.products import record_kind
from models.records.transaction import Transaction
from models.store.base import Clock, database
from models.store.prepared import PreparedQuery
from models.webhooks.outbox import enqueue, job_event_data


@dataclasses.dataclass
class _Tally:
    records: int = 0
    already_redacted: int = 0
    errors: int = 0
    eligible_at: datetime.datetime | None = None

    def wait_for(self, moment: datetime.datetime) -> None:
        if self.eligible_at is None or moment > self.eligible_at:
            self.eligible_at = moment


def validate(job: RedactionJob, *, owner: str, clock: Clock, config: WorkConfig) -> RedactionJob:
    """Check every object of the job and move it to ready (no error) or failed.

    Errors per object: unprovisioned, unknown_transaction, already_redacted, held (a legal
    hold covers it), premature, held_by_other_job, subject_has_no_records. With `fix`,
    already-redacted records are dropped and premature ones make the run wait
    (`eligible_at`); the others (held included) stay errors.
    Starts afresh each time (an interrupted validation is simply done again)."""
    with database.atomic():
        transition(job, "created", "validating")  # if the API has not moved it yet
        JobValidationError.delete().where(JobValidationError.job == job.seq).execute()
    fix = job.validation_behavior == "fix"
    products = Account.get_by_id(job.account_id).product_set
    tally = _Tally()
    min_age = datetime.timedelta(seconds=config.min_age_seconds)
    now = clock()

    position = -1
    while True:
        rows = list(_transaction_checks(job, position, config.batch_size))
        if not rows:
            break
        legal = held_records(
            [(r[1], r[5], r[11], r[12]) for r in rows if r[4] is not None and r[9] is None]
        )
        errors = []
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
            _sender_key,
            _recipient_key,
        ) in rows:
            if product not in products:
                errors.append(
                    (position, "unprovisioned", str(Unprovisioned(job.account_id, product)))
                )
            elif found is None or (account, found_product, found_direction) != (
                job.account_id,
                product,
                direction,
            ):
                errors.append(
                    (
                        position,
                        "unknown_transaction",
                        str(RecordNotFound(transaction_id, record_kind(product, direction))),
                    )
                )
            elif redacted_at is not None:
                if fix:
                    tally.already_redacted += 1
                else:
                    errors.append(
                        (position, "already_redacted", f"ID '{transaction_id}' is already redacted")
                    )
            elif (transaction_id, job.account_id) in legal:
                errors.append((position, "held", str(RecordHeld(transaction_id))))
            elif held:
                errors.append(
                    (
                        position,
                        "held_by_other_job",
                        f"ID '{transaction_id}' is named by another ready or redacting job",
                    )
                )
            elif created_at + min_age > now and not fix:
                errors.append(
                    (
                        position,
                        "premature",
                        str(
                            PrematureRedaction(
                                transaction_id,
                                config.min_age_seconds,
                                (created_at + min_age - now).total_seconds(),
                            )
                        ),
                    )
                )
            else:
                if created_at + min_age > now:
                    tally.wait_for(created_at + min_age)
                tally.records += 1
        _record_errors(job, errors, tally, owner, clock(), config)

    for subject in JobObject.select().where(
        (JobObject.job == job.seq) & JobObject.subject_key.is_null(False)
    ):
        error = _check_subject(job, subject, products, fix, tally, now, min_age, config)
        if error:
            _record_errors(job, [error], tally, owner, clock(), config)

    with database.atomic():
        renew(job, owner, clock(), config)
        moved = transition(
            job,
            "validating",
            "failed" if tally.errors else "ready",
            records=tally.records,
            already_redacted=tally.already_redacted,
            validation_errors=tally.errors,
            eligible_at=tally.eligible_at if not tally.errors else None,
        )
        validated = RedactionJob.get_by_id(job.seq)
        if moved and tally.errors:  # its webhook event commits with the status
            data = job_event_data(validated)
            enqueue(job.account_id, "job.failed", data, f"job:{job.id}", clock())
    return validated


def _transaction_checks(job: RedactionJob, after: int, limit: int):
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
        yield (
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
    return (
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
        )
        .join(
            Transaction,
            JOIN.LEFT_OUTER,
            on=(
                (Transaction.id == JobObject.transaction_id)
                & (Transaction.account == mark("account"))
            ),
        )
        .where(
            (JobObject.job == mark("job"))
            & (JobObject.position > mark("after"))
            & JobObject.transaction_id.is_null(False)
        )
        .order_by(JobObject.position)
        .limit(mark("limit"))
    )


# Run for every batch of a job: built once (see PreparedQuery), rows read raw.
_CHECKS = PreparedQuery(_build_checks)


def _check_subject(job, subject, products, fix, tally, now, min_age, config):
    """The validation error of one subject, or None (then its records are tallied)."""
    index = subject.position - job.transactions
    by_product: list[Any] = list(
        Transaction.select(
            Transaction.product, fn.COUNT(Transaction.id), fn.MAX(Transaction.created_at)
        )
        .where(subject_records(job, subject.subject_key))
        .group_by(Transaction.product)
        .tuples()
    )
    if not by_product:
        return (
            subject.position,
            "subject_has_no_records",
            f"subjects[{index}]: no unredacted record of this account has this number",
        )
    unprovisioned = sorted(p for p, _, _ in by_product if p not in products)
    if unprovisioned:
        return (
            subject.position,
            "unprovisioned",
            f"subjects[{index}]: " + str(Unprovisioned(job.account_id, unprovisioned[0])),
        )
    if (
        Transaction.select()
        .where(subject_records(job, subject.subject_key) & held_condition(job.account_id))
        .exists()
    ):
        return (
            subject.position,
            "held",
            f"subjects[{index}]: a legal hold covers records of this number",
        )
    other = JobObject.alias()
    held = (
        other.select()
        .join(RedactionJob, on=(other.job == RedactionJob.seq))
        .where(
            (other.subject_key == subject.subject_key)
            & (other.job != job.seq)
            & (RedactionJob.account == job.account_id)
            & RedactionJob.status.in_(HOLDING)
        )
        .exists()
    )
    if held:
        return (
            subject.position,
            "held_by_other_job",
            f"subjects[{index}]: the number is named by another ready or redacting job",
        )
    newest = max(Transaction.created_at.python_value(latest) for _, _, latest in by_product)
    if newest + min_age > now:
        if not fix:
            return (
                subject.position,
                "premature",
                f"subjects[{index}]: the newest record of this number is younger than "
                f"{config.min_age_seconds} seconds",
            )
        tally.wait_for(newest + min_age)
    tally.records += sum(count for _, count, _ in by_product)
    return None


def _record_errors(job, errors, tally, owner, now, config) -> None:
    with database.atomic():
        renew(job, owner, now, config)
        if errors:
            JobValidationError.insert_many(
                [(job.seq, position, code, message) for position, code, message in errors],
                fields=(
                    JobValidationError.job,
                    JobValidationError.position,
                    JobValidationError.code,
                    JobValidationError.message,
                ),
            ).execute()
    tally.errors += len(errors)
