"""Validating a job: which of its objects can be redacted, and when."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Collection
from typing import Any

from peewee import fn

from models.erasure.held import held_condition, held_records
from models.errors import PrematureRedaction, RecordHeld, RecordNotFound, Unprovisioned
from models.jobs.checks import transaction_checks
from models.jobs.job import HOLDING, JobObject, JobValidationError, RedactionJob, transition
from models.jobs.lease import WorkConfig, renew
from models.jobs.records import subject_records
from models.records.account import Account
from models.records.products import record_kind
from models.records.transaction import Transaction
from models.store.base import Clock, database
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


@dataclasses.dataclass
class _Validation:
    """One validation of a job: what every check of it needs, and its tally."""

    job: RedactionJob
    owner: str
    config: WorkConfig
    products: Collection[str]
    fix: bool  # `fix`: drop what is already redacted, wait for what is premature
    min_age: datetime.timedelta
    now: datetime.datetime
    tally: _Tally = dataclasses.field(default_factory=_Tally)


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
    run = _Validation(
        job,
        owner,
        config,
        products=Account.get_by_id(job.account_id).product_set,
        fix=job.validation_behavior == "fix",
        min_age=datetime.timedelta(seconds=config.min_age_seconds),
        now=clock(),
    )
    tally = run.tally
    # Read once: the loop below runs for every object of the job.
    products, fix, min_age, now = run.products, run.fix, run.min_age, run.now
    position = -1
    while True:
        rows = list(transaction_checks(job, position, config.batch_size))
        if not rows:
            break
        legal = held_records(
            [
                (r.transaction_id, r.account, r.sender_key, r.recipient_key)
                for r in rows
                if r.found is not None and r.redacted_at is None
            ]
        )
        errors = []
        # Checked's fields, unpacked as transaction_checks builds them: the fastest read.
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
            _,
            _,
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
        _record_errors(run, errors, clock())

    for subject in JobObject.select().where(
        (JobObject.job == job.seq) & JobObject.subject_key.is_null(False)
    ):
        error = _check_subject(run, subject)
        if error:
            _record_errors(run, [error], clock())

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


def _check_subject(run: _Validation, subject) -> tuple[int, str, str] | None:
    """The validation error of one subject, or None (then its records are tallied)."""
    job = run.job
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
    unprovisioned = sorted(p for p, _, _ in by_product if p not in run.products)
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
    if newest + run.min_age > run.now:
        if not run.fix:
            return (
                subject.position,
                "premature",
                f"subjects[{index}]: the newest record of this number is younger than "
                f"{run.config.min_age_seconds} seconds",
            )
        run.tally.wait_for(newest + run.min_age)
    run.tally.records += sum(count for _, count, _ in by_product)
    return None


def _record_errors(run: _Validation, errors: list, now: datetime.datetime) -> None:
    """Record validation errors of the job, its lease renewed in the same transaction."""
    job = run.job
    with database.atomic():
        renew(job, run.owner, now, run.config)
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
    run.tally.errors += len(errors)
