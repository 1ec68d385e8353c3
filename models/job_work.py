"""The work of redaction jobs, done by queue workers: validation and redaction, in batches.

Every step can be repeated and records its progress in the job's row in the same
transaction as the work it did, so a worker killed at any point loses nothing: its lease
on the job expires, the sweep queues the job again, and the next worker goes on from the
row. A record is redacted at most once (the scrub only touches unredacted rows, and the
run's cursor moves with it), so the counts and the audit trail stay exact.

A run never holds more than one batch of records in memory.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable

import peewee
from peewee import JOIN, fn

from .account import Account
from .db import PreparedQuery, database
from .errors import PrematureRedaction, RecordNotFound, Unprovisioned
from .job import HOLDING, WORKING, JobObject, JobValidationError, RedactionJob, transition
from .policy import record_kind
from .redaction import RedactionRequest, redact_batch
from .transaction import Transaction

Clock = Callable[[], datetime.datetime]


@dataclasses.dataclass(frozen=True)
class WorkConfig:
    min_age_seconds: int = 3600
    batch_size: int = 2000
    lease_seconds: int = 60

    @property
    def lease(self) -> datetime.timedelta:
        return datetime.timedelta(seconds=self.lease_seconds)

    @property
    def queued_grace(self) -> datetime.timedelta:
        """How long a queued, unclaimed job may wait before the sweep queues it again."""
        return 10 * self.lease


class LeaseLost(Exception):
    """Another worker took the job over (this one was too slow to renew its lease)."""


@dataclasses.dataclass
class Wait(Exception):
    """The job cannot go on before `until` (premature records)."""

    until: datetime.datetime


# ----------------------------------------------------------------------------- driving


def advance(
    job_id: str, *, owner: str, clock: Clock, config: WorkConfig
) -> datetime.datetime | None:
    """Do whatever the job needs next, if no other worker holds it: validate it, run it
    (also when it became ready with a `run_at` that has come), or finish its cancellation.
    Returns when to come back, or None."""
    job = _claim(job_id, owner, clock(), config)
    if job is None:
        return None
    come_back = None
    try:
        if job.status == "ready":  # claimed only when its run_at has come
            job = _start_scheduled_run(job)
        if job.status in ("created", "validating"):
            job = validate(job, owner=owner, clock=clock, config=config)
            if job.status == "ready" and job.run_at is not None:
                if job.run_at > clock():
                    come_back = job.run_at
                else:
                    job = _start_scheduled_run(job)
        if job.status == "redacting":
            come_back = run(job, owner=owner, clock=clock, config=config)
        elif job.status == "canceling":
            finish_cancel(job)
    except Wait as wait:
        come_back = wait.until
    except LeaseLost:
        return None
    _release(job, owner, come_back)
    return come_back


def _claim(
    job_id: str, owner: str, now: datetime.datetime, config: WorkConfig
) -> RedactionJob | None:
    """Take the job's lease if it needs work (or is ready and its `run_at` has come) and
    no live lease is held on it."""
    needs_work = RedactionJob.status.in_(WORKING) | (
        (RedactionJob.status == "ready") & (RedactionJob.run_at <= now)
    )
    claimed = (
        RedactionJob.update(lease_owner=owner, lease_until=now + config.lease)
        .where(
            (RedactionJob.id == job_id)
            & needs_work
            & (
                RedactionJob.lease_owner.is_null()
                | RedactionJob.lease_until.is_null()
                | (RedactionJob.lease_until <= now)
            )
        )
        .execute()
    )
    return RedactionJob.get(RedactionJob.id == job_id) if claimed else None


def _renew(job: RedactionJob, owner: str, now: datetime.datetime, config: WorkConfig) -> None:
    """Extend the lease, inside the caller's transaction; LeaseLost if no longer ours."""
    renewed = (
        RedactionJob.update(lease_until=now + config.lease)
        .where((RedactionJob.seq == job.seq) & (RedactionJob.lease_owner == owner))
        .execute()
    )
    if not renewed:
        raise LeaseLost(job.id)


def _release(job: RedactionJob, owner: str, come_back: datetime.datetime | None) -> None:
    """Give the lease up; a job that waits keeps `lease_until` as the time to come back,
    so that the sweep leaves it alone until then."""
    (
        RedactionJob.update(lease_owner=None, lease_until=come_back)
        .where((RedactionJob.seq == job.seq) & (RedactionJob.lease_owner == owner))
        .execute()
    )


def _start_scheduled_run(job: RedactionJob) -> RedactionJob:
    transition(job, "ready", "redacting")
    return RedactionJob.get_by_id(job.seq)


def sweep(now: datetime.datetime, config: WorkConfig) -> list[str]:
    """The jobs a worker should take up now: ready jobs whose `run_at` has come (moved to
    redacting here), and jobs with work whose lease has expired (a worker died, a queued
    task was lost, or a wait is over). Marks them queued; returns their ids."""
    with database.atomic():
        due = list(
            RedactionJob.select().where(
                (RedactionJob.status == "ready") & (RedactionJob.run_at <= now)
            )
        )
        for job in due:
            _start_scheduled_run(job)
        due = [job.id for job in due]
        stale = [
            j.id
            for j in RedactionJob.select(RedactionJob.id).where(
                RedactionJob.status.in_(WORKING)
                & (RedactionJob.lease_until.is_null() | (RedactionJob.lease_until <= now))
            )
        ]
        return sorted(set(due) | set(stale))


def mark_queued(job_ids: list[str], now: datetime.datetime, config: WorkConfig) -> None:
    """Note that tasks for these jobs are being queued: the sweep leaves them alone for a
    while, a worker can claim them at once. Jobs a worker holds are left as they are."""
    (
        RedactionJob.update(lease_until=now + config.queued_grace)
        .where(RedactionJob.id.in_(job_ids) & RedactionJob.lease_owner.is_null())
        .execute()
    )


# -------------------------------------------------------------------------- validation


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

    Errors per object: unprovisioned, unknown_transaction, already_redacted, premature,
    held_by_other_job, subject_has_no_records. With `fix`, already-redacted records are
    dropped and premature ones make the run wait (`eligible_at`); the others stay errors.
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
        _renew(job, owner, clock(), config)
        transition(
            job,
            "validating",
            "failed" if tally.errors else "ready",
            records=tally.records,
            already_redacted=tally.already_redacted,
            validation_errors=tally.errors,
            eligible_at=tally.eligible_at if not tally.errors else None,
        )
    return RedactionJob.get_by_id(job.seq)


def _transaction_checks(job: RedactionJob, after: int, limit: int):
    """For each transaction object after position `after`: the object, the record it
    names (if any), and whether another holding job names it too."""
    rows = _CHECKS.execute(None, {"job": job.seq, "after": after, "limit": limit})
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
        )
        .join(Transaction, JOIN.LEFT_OUTER, on=(Transaction.id == JobObject.transaction_id))
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
_OBJECTS_AFTER = PreparedQuery(
    lambda mark, _: (
        JobObject.select(
            JobObject.position, JobObject.transaction_id, JobObject.product, JobObject.direction
        )
        .where(
            (JobObject.job == mark("job"))
            & (JobObject.position > mark("after"))
            & JobObject.transaction_id.is_null(False)
        )
        .order_by(JobObject.position)
        .limit(mark("limit"))
    )
)


def _subject_records(job: RedactionJob, key: str):
    """The account's unredacted records where the number hashed to `key` appears."""
    return (
        (Transaction.account == job.account_id)
        & Transaction.redacted_at.is_null()
        & ((Transaction.sender_key == key) | (Transaction.recipient_key == key))
    )


def _check_subject(job, subject, products, fix, tally, now, min_age, config):
    """The validation error of one subject, or None (then its records are tallied)."""
    index = subject.position - job.transactions
    by_product = list(
        Transaction.select(
            Transaction.product, fn.COUNT(Transaction.id), fn.MAX(Transaction.created_at)
        )
        .where(_subject_records(job, subject.subject_key))
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
    other = JobObject.alias()
    held = (
        other.select()
        .join(RedactionJob, on=(other.job == RedactionJob.seq))
        .where(
            (other.subject_key == subject.subject_key)
            & (other.job != job.seq)
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
        _renew(job, owner, now, config)
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


# ----------------------------------------------------------------------------- running


@dataclasses.dataclass
class _Batch:
    """One atomic step of a run: redact `requests`, then move the job's cursor to
    `cursor` (transaction objects) or mark `subject_done` (a subject with no more
    records); with the job's counts, in the same transaction."""

    job: RedactionJob
    owner: str
    now: datetime.datetime
    config: WorkConfig
    requests: list[RedactionRequest]
    cursor: int | None = None
    subject_done: int | None = None


def run(
    job: RedactionJob, *, owner: str, clock: Clock, config: WorkConfig
) -> datetime.datetime | None:
    """Redact the job's records, batch by batch, from where its row says the last run
    stopped; then mark it succeeded and forget its numbers. Returns when to come back if
    some records are not old enough yet (raises Wait), else None."""
    now = clock()
    if job.eligible_at is not None and job.eligible_at > now:
        raise Wait(job.eligible_at)
    products = Account.get_by_id(job.account_id).product_set

    while True:  # the named transactions, from the cursor on
        objects = _OBJECTS_AFTER.execute(
            None, {"job": job.seq, "after": job.cursor, "limit": config.batch_size}
        ).fetchall()
        if not objects:
            break
        now = clock()
        requests = [
            _request(job, transaction_id, product, direction or None, now, config)
            for _, transaction_id, product, direction in objects
        ]
        _commit(_Batch(job, owner, now, config, requests, cursor=objects[-1][0]))
        job.cursor = objects[-1][0]

    # Read whole before the first commit: on SQLite an open read cursor would hold the
    # lock the writer's commit needs (see GroupCommit.run).
    subjects = list(
        JobObject.select().where(
            (JobObject.job == job.seq)
            & JobObject.subject_key.is_null(False)
            & (JobObject.done == False)  # noqa: E712 (a peewee expression)
        )
    )
    for subject in subjects:
        _erase_subject(job, subject, products, owner, clock, config)

    finish_run(job)
    return None


def _erase_subject(job, subject, products, owner, clock, config) -> None:
    min_age = datetime.timedelta(seconds=config.min_age_seconds)
    while True:
        now = clock()
        records = list(
            Transaction.select(Transaction.id, Transaction.product, Transaction.direction)
            .where(
                _subject_records(job, subject.subject_key)
                & Transaction.product.in_(sorted(products))
                & (Transaction.created_at <= now - min_age)
            )
            .limit(config.batch_size)
            .tuples()
        )
        if records:
            _commit(
                _Batch(
                    job,
                    owner,
                    now,
                    config,
                    [_request(job, *record, now, config) for record in records],
                )
            )
            continue
        newest = (
            Transaction.select(fn.MIN(Transaction.created_at))
            .where(
                _subject_records(job, subject.subject_key)
                & Transaction.product.in_(sorted(products))
            )
            .scalar()
        )
        if newest is not None:  # records about the number arrived after validation
            raise Wait(Transaction.created_at.python_value(newest) + min_age)
        _commit(_Batch(job, owner, now, config, [], subject_done=subject.position))
        return


def _request(job, transaction_id, product, direction, now, config) -> RedactionRequest:
    return RedactionRequest(
        job.account_id,
        transaction_id,
        product,
        direction,
        now,
        config.min_age_seconds,
        job.id,
        "job",
    )


def _commit(batch: _Batch) -> None:
    """Run one batch in a shared transaction (it takes its turn with the API's
    redactions, see GroupCommit); Wait and LeaseLost reach the caller."""
    database.obj.group_commit.run(_run_batches, batch)


def _run_batches(batches: list[_Batch]) -> list:
    outcomes = []
    for batch in batches:
        try:
            # A savepoint per batch: one that stops leaves the others of the shared
            # transaction (API redactions, other jobs) untouched.
            with database.atomic():
                outcomes.append(_run_batch(batch))
        except (Wait, LeaseLost) as exc:
            outcomes.append(exc)
    return outcomes


def _run_batch(batch: _Batch) -> None:
    job = batch.job
    _renew(job, batch.owner, batch.now, batch.config)
    redacted = already = skipped = 0
    for outcome in redact_batch(batch.requests) if batch.requests else []:
        if outcome is True:
            redacted += 1
        elif outcome is False:
            already += 1
        elif isinstance(outcome, PrematureRedaction):
            raise Wait(batch.now + datetime.timedelta(seconds=outcome.remaining_seconds))
        else:  # the record is gone from the account or the product unprovisioned since
            skipped += 1
    changes = {
        RedactionJob.redacted: RedactionJob.redacted + redacted,
        RedactionJob.already_redacted: RedactionJob.already_redacted + already,
        RedactionJob.skipped: RedactionJob.skipped + skipped,
    }
    if batch.cursor is not None:
        changes[RedactionJob.cursor] = batch.cursor
    RedactionJob.update(changes).where(RedactionJob.seq == job.seq).execute()
    if batch.subject_done is not None:
        (
            JobObject.update(done=True)
            .where((JobObject.job == job.seq) & (JobObject.position == batch.subject_done))
            .execute()
        )


def finish_run(job: RedactionJob) -> None:
    """redacting -> succeeded, forgetting the job's numbers and request digest."""
    _finish(job, "redacting", "succeeded")


def finish_cancel(job: RedactionJob) -> None:
    """canceling -> canceled: nothing is redacted; the job's numbers are forgotten."""
    _finish(job, "canceling", "canceled")


def _finish(job: RedactionJob, source: str, target: str) -> None:
    """Move a job to a final status; a finished job keeps no number, not even hashed."""
    with database.atomic():
        (
            JobObject.update(subject=None, subject_key=None)
            .where((JobObject.job == job.seq) & JobObject.subject_key.is_null(False))
            .execute()
        )
        transition(job, source, target, request_digest=None)
    job.status = target
