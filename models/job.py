"""Redaction jobs: their rows, their state machine, and the queries the jobs API needs.

A job names records (`objects.transactions`) and phone numbers (`objects.subjects`: every
record of the account where the number appears). It is created, validated, run and
cancelled through the moves in `MOVES`; the work itself (validation, redaction) is in
models/job_work.py and runs in queue workers. No HTTP here.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import secrets
from collections.abc import Callable, Iterable, Iterator

import peewee

from .account import Account
from .db import BaseModel, PreparedQuery, UTCDateTimeField, database
from .errors import RedactionError
from .policy import DIRECTIONS, PRODUCTS

STATUSES = (
    "created",
    "validating",
    "ready",
    "failed",
    "redacting",
    "succeeded",
    "canceling",
    "canceled",
)
BEHAVIORS = ("error", "fix")
FINISHED = ("succeeded", "canceled")
UNFINISHED = tuple(s for s in STATUSES if s not in FINISHED)
HOLDING = ("ready", "redacting")
"""Jobs that hold their objects: another job naming them fails validation."""
WORKING = ("created", "validating", "redacting", "canceling")
"""Statuses in which a queue worker has something to do for the job."""

MOVES = {
    "validate": {"failed": "validating"},
    "run": {"ready": "redacting"},
    "cancel": {"ready": "canceling", "failed": "canceling"},
}
"""The moves a client asks for, as {action: {from status: to status}}. The service makes
the others: created -> validating -> ready | failed, redacting -> succeeded and
canceling -> canceled."""

CLEARED_SUBJECT = "REDACTED"

_log = logging.getLogger("redact.jobs")


def log_transition(job: RedactionJob, old: str | None, new: str, moved: int = 1) -> None:
    """One structured log line per status change that took place (`moved` rows): ids and
    statuses only."""
    if moved:
        _log.info(
            "job_transition",
            extra={"fields": {"job": job.id, "api_key": job.account_id, "from": old, "to": new}},
        )


def transition(job: RedactionJob, source: str, target: str, **changes) -> bool:
    """Move the job from `source` to `target` (with `changes` to other columns) if its
    status is still `source`, and log it; whether it moved. Concurrent movers cannot
    both win."""
    moved = (
        RedactionJob.update(status=target, **changes)
        .where((RedactionJob.seq == job.seq) & (RedactionJob.status == source))
        .execute()
    )
    log_transition(job, source, target, moved)
    return bool(moved)


class JobError(RedactionError):
    """Base of the errors of the jobs API."""


class JobNotFound(JobError):
    def __init__(self, job_id: str):
        super().__init__(f"No redaction job {job_id!r}")
        self.job_id = job_id


class InvalidMove(JobError):
    def __init__(self, job_id: str, action: str, status: str):
        allowed = " or ".join(MOVES[action]) if action in MOVES else "no status"
        super().__init__(
            f"Cannot {action} redaction job {job_id} in status '{status}'; "
            f"{action} needs status {allowed}"
        )
        self.job_id, self.action, self.status = job_id, action, status


class InvalidJobUpdate(JobError):
    """An update asks for a change the job's status does not allow."""


class InvalidJobRequest(JobError):
    """A job's objects are malformed beyond what the contract's schema checks (a repeated
    transaction or number, a subject that is not a phone number)."""


class TooManyJobs(JobError):
    def __init__(self, api_key: str, limit: int):
        super().__init__(
            f"Account {api_key} has {limit} unfinished redaction jobs, the "
            "most allowed; wait for one to finish or cancel one"
        )
        self.limit = limit


class IdempotencyMismatch(JobError):
    def __init__(self, key: str):
        super().__init__(f"Idempotency-Key {key!r} was used with a different request")


class InvalidCursor(JobError):
    def __init__(self, parameter: str, value: str):
        super().__init__(f"{parameter}: no such object {value!r} in this list")


class RedactionJob(BaseModel):
    """One job. `seq` orders jobs (newest first in lists); `id` is the public name."""

    seq = peewee.AutoField()
    id = peewee.CharField(max_length=40, unique=True)
    account = peewee.ForeignKeyField(
        Account, column_name="api_key", on_delete="CASCADE", object_id_name="account_id"
    )
    status = peewee.CharField(max_length=12)
    validation_behavior = peewee.CharField(max_length=8, default="error")
    description = peewee.TextField(null=True)
    created = UTCDateTimeField()
    run_at = UTCDateTimeField(null=True)
    # Fix mode: the run waits until every premature object is old enough.
    eligible_at = UTCDateTimeField(null=True)
    # A worker's claim: until when, and by whom (None: queued, not yet claimed).
    lease_until = UTCDateTimeField(null=True)
    lease_owner = peewee.CharField(max_length=80, null=True)
    cursor = peewee.IntegerField(default=-1)
    """Position of the last transaction object the run has processed."""
    transactions = peewee.IntegerField(default=0)
    subjects = peewee.IntegerField(default=0)
    records = peewee.IntegerField(default=0)
    redacted = peewee.IntegerField(default=0)
    already_redacted = peewee.IntegerField(default=0)
    skipped = peewee.IntegerField(default=0)
    validation_errors = peewee.IntegerField(default=0)
    idempotency_key = peewee.CharField(max_length=255, null=True)
    request_digest = peewee.CharField(max_length=64, null=True)

    class Meta:
        table_name = "redaction_job"
        indexes = (
            (("account", "idempotency_key"), True),
            (("account", "status"), False),
            (("status", "lease_until"), False),
        )

    @property
    def counts(self) -> dict:
        return {
            "transactions": self.transactions,
            "subjects": self.subjects,
            "records": self.records,
            "redacted": self.redacted,
            "already_redacted": self.already_redacted,
            "skipped": self.skipped,
            "validation_errors": self.validation_errors,
        }


class _DirectionField(peewee.CharField):
    """A direction, stored as '' for products without one, so that the unique index on a
    job's transactions also holds for them (NULLs never collide in an index)."""

    def db_value(self, value):
        return super().db_value("" if value is None else value)

    def python_value(self, value):
        return None if value == "" else super().python_value(value)


class JobObject(BaseModel):
    """One object of a job: a transaction (id, product, direction) or a subject (the number
    as given, and its keyed hash). A subject's number is cleared when the job finishes."""

    job = peewee.ForeignKeyField(RedactionJob, on_delete="CASCADE")
    position = peewee.IntegerField()
    transaction_id = peewee.CharField(max_length=64, null=True)
    product = peewee.CharField(max_length=20, null=True)
    direction = _DirectionField(max_length=10, default="")
    subject = peewee.CharField(max_length=32, null=True)
    subject_key = peewee.CharField(max_length=32, null=True)
    done = peewee.BooleanField(default=False)

    class Meta:
        table_name = "redaction_job_object"
        primary_key = peewee.CompositeKey("job", "position")
        indexes = (
            (("transaction_id", "job", "product", "direction"), True),
            (("subject_key", "job"), True),
        )

    @property
    def kind(self) -> str:
        return "subject" if self.transaction_id is None else "transaction"

    def as_object(self) -> dict:
        if self.transaction_id is None:
            return {"subject": self.subject or CLEARED_SUBJECT}
        return {
            "transaction": {
                "id": self.transaction_id,
                "product": self.product,
                "type": self.direction,
            }
        }


class JobValidationError(BaseModel):
    """Why one object of a job cannot be redacted, from the job's last validation."""

    job = peewee.ForeignKeyField(RedactionJob, on_delete="CASCADE")
    position = peewee.IntegerField()
    code = peewee.CharField(max_length=40)
    message = peewee.TextField()

    class Meta:
        table_name = "redaction_job_validation_error"
        primary_key = peewee.CompositeKey("job", "position")


JOB_MODELS = (RedactionJob, JobObject, JobValidationError)


@dataclasses.dataclass(frozen=True)
class TransactionRef:
    id: str
    product: str
    type: str | None = None


def new_job_id() -> str:
    return "rj_" + secrets.token_hex(12)


def _direction(product: str, type_: str | None) -> str | None:
    if product != "sms":
        return None
    return type_ or "outbound"


def create_job(
    *,
    api_key: str,
    transactions: Iterable[TransactionRef],
    subjects: Iterable[str],
    validation_behavior: str = "error",
    description: str | None = None,
    run_at: datetime.datetime | None = None,
    now: datetime.datetime,
    max_unfinished: int,
    idempotency_key: str | None = None,
    request_body: dict | None = None,
    admit: Callable[[], None] | None = None,
) -> tuple[RedactionJob, bool]:
    """Store a new job in status `created`, its objects streamed from the iterables in
    batches (a job may name millions of records). Returns (job, created): with an
    `idempotency_key` the account already used for the same request, the existing job and
    False (once that job has finished it no longer knows its request, and the key alone
    returns it). All or nothing: raises TooManyJobs, IdempotencyMismatch or
    InvalidJobRequest (no object, an unknown product, a subject that is not a phone
    number), or whatever `admit()` raises (called before a new job is stored: the
    queue's admission check), and stores nothing."""
    if validation_behavior not in BEHAVIORS:
        raise InvalidJobRequest(f"validation_behavior must be one of {', '.join(BEHAVIORS)}")
    digest = _request_digest(request_body) if idempotency_key is not None else None
    with database.atomic():
        if idempotency_key is not None:
            existing = RedactionJob.get_or_none(
                (RedactionJob.account == api_key)
                & (RedactionJob.idempotency_key == idempotency_key)
            )
            if existing is not None:
                # A finished job forgets its request (it may name numbers): same key,
                # same job.
                if existing.request_digest not in (None, digest):
                    raise IdempotencyMismatch(idempotency_key)
                return existing, False
        if admit is not None:
            admit()
        unfinished = (
            RedactionJob.select()
            .where((RedactionJob.account == api_key) & RedactionJob.status.in_(UNFINISHED))
            .count()
        )
        if unfinished >= max_unfinished:
            raise TooManyJobs(api_key, max_unfinished)
        job = RedactionJob.create(
            id=new_job_id(),
            account=api_key,
            status="created",
            validation_behavior=validation_behavior,
            description=description,
            created=now,
            run_at=run_at,
            idempotency_key=idempotency_key,
            request_digest=digest,
        )
        counts = _store_objects(job, transactions, subjects)
        job.transactions, job.subjects = counts
        job.save(only=[RedactionJob.transactions, RedactionJob.subjects])
    log_transition(job, None, "created")
    return job, True


def _store_objects(
    job: RedactionJob,
    transactions: Iterable[TransactionRef],
    subjects: Iterable[str],
    batch_size: int = 1000,
) -> tuple[int, int]:
    """Insert the objects in batches; returns how many transactions and subjects the job
    names. An object named again as before (the same number in another format, too) is
    stored once; a transaction id named with another product or type is a second object
    (which validation will find unknown)."""
    subject_key = database.obj.subject_key
    position = 0
    batch: list[tuple] = []

    def flush() -> int:
        if not batch:
            return 0
        stored = _INSERT_OBJECTS.execute(len(batch), {"o": batch}).rowcount
        batch.clear()
        return stored

    transactions_stored = 0
    for ref in transactions:
        if ref.product not in PRODUCTS:
            raise InvalidJobRequest(f"transaction {ref.id}: no product {ref.product!r}")
        if ref.type is not None and ref.type not in DIRECTIONS:
            raise InvalidJobRequest(f"transaction {ref.id}: no type {ref.type!r}")
        batch.append(
            (
                job.seq,
                position,
                ref.id,
                ref.product,
                _direction(ref.product, ref.type) or "",
                None,
                None,
                False,
            )
        )
        position += 1
        if len(batch) >= batch_size:
            transactions_stored += flush()
    transactions_stored += flush()
    subjects_stored = 0
    for index, number in enumerate(subjects):
        key = subject_key.hash(number)
        if key is None:
            raise InvalidJobRequest(
                f"subjects[{index}] is not a phone number (7 to 15 "
                "digits, optionally with '+' and separators)"
            )
        batch.append((job.seq, position, None, None, "", number, key, False))
        position += 1
        if len(batch) >= batch_size:
            subjects_stored += flush()
    subjects_stored += flush()
    if not transactions_stored + subjects_stored:
        raise InvalidJobRequest("a job names at least one transaction or subject")
    return transactions_stored, subjects_stored


_OBJECT_FIELDS = (
    JobObject.job,
    JobObject.position,
    JobObject.transaction_id,
    JobObject.product,
    JobObject.direction,
    JobObject.subject,
    JobObject.subject_key,
    JobObject.done,
)
# Built once per batch size (see PreparedQuery); values go in as the database stores them.
_INSERT_OBJECTS = PreparedQuery(
    lambda mark, n: JobObject.insert_many(
        [[mark("o", i, j) for j in range(len(_OBJECT_FIELDS))] for i in range(n)],
        fields=_OBJECT_FIELDS,
    ).on_conflict_ignore()
)


def _request_digest(body: dict | None) -> str:
    """A keyed digest of a create request, to tell a retry from another request with the
    same Idempotency-Key (keyed: the request may name numbers)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return database.obj.subject_key.digest(canonical)


def get_job(api_key: str, job_id: str) -> RedactionJob:
    """The account's job `job_id`; JobNotFound for an unknown id or another account's."""
    job = RedactionJob.get_or_none((RedactionJob.id == job_id) & (RedactionJob.account == api_key))
    if job is None:
        raise JobNotFound(job_id)
    return job


def iter_objects(job: RedactionJob) -> Iterator[JobObject]:
    """The job's objects in the order given, read in pages."""
    position = -1
    while True:
        page = list(
            JobObject.select()
            .where((JobObject.job == job.seq) & (JobObject.position > position))
            .order_by(JobObject.position)
            .limit(1000)
        )
        yield from page
        if len(page) < 1000:
            return
        position = page[-1].position


def move(job: RedactionJob, action: str) -> RedactionJob:
    """Apply a client's move (validate, run, cancel) if the job's status allows it;
    InvalidMove names the current status otherwise. The row changes only if its status is
    still the one read, so concurrent moves cannot both win."""
    target = MOVES[action].get(job.status)
    if target is None:
        raise InvalidMove(job.id, action, job.status)
    changes = {"lease_owner": None, "lease_until": None}
    if action == "validate":
        changes.update(validation_errors=0, records=0, already_redacted=0, eligible_at=None)
    if not transition(job, job.status, target, **changes):
        current = RedactionJob.get_by_id(job.seq)
        raise InvalidMove(job.id, action, current.status)
    return RedactionJob.get_by_id(job.seq)


def undo_move(job: RedactionJob, moved: RedactionJob) -> None:
    """Put a job back where it was before `move` (the work the move starts could not be
    queued), unless a worker has taken it up meanwhile."""
    undone = (
        RedactionJob.update(
            status=job.status,
            validation_errors=job.validation_errors,
            records=job.records,
            already_redacted=job.already_redacted,
            eligible_at=job.eligible_at,
            lease_until=job.lease_until,
        )
        .where(
            (RedactionJob.seq == job.seq)
            & (RedactionJob.status == moved.status)
            & RedactionJob.lease_owner.is_null()
        )
        .execute()
    )
    log_transition(job, moved.status, job.status, undone)


def start_validation(job: RedactionJob) -> RedactionJob:
    """created -> validating, once the validation is queued (if a worker has already taken
    the job up, it stays where the worker put it)."""
    transition(job, "created", "validating")
    return RedactionJob.get_by_id(job.seq)


UPDATABLE = {
    "description": STATUSES,
    "run_at": ("created", "validating", "ready", "failed"),
    "validation_behavior": ("failed",),
}


def update_job(job: RedactionJob, changes: dict) -> RedactionJob:
    """Change `description`, `run_at` or `validation_behavior` (`changes` holds only the
    ones given). A failed job does not re-validate by itself (use validate), and the
    behaviour of other jobs is fixed once validated: InvalidJobUpdate otherwise."""
    values = {}
    for name, value in changes.items():
        if getattr(job, name) == value:
            continue
        if job.status not in UPDATABLE[name]:
            raise InvalidJobUpdate(
                f"Cannot change {name} of redaction job {job.id} in status '{job.status}'; "
                f"{name} can change in status {' or '.join(UPDATABLE[name])}"
            )
        values[getattr(RedactionJob, name)] = value
    if not values:
        return job
    updated = (
        RedactionJob.update(values)
        .where((RedactionJob.seq == job.seq) & (RedactionJob.status == job.status))
        .execute()
    )
    if not updated:  # its status moved meanwhile: judge again against the new one
        return update_job(RedactionJob.get_by_id(job.seq), changes)
    return RedactionJob.get_by_id(job.seq)


def delete_job(job: RedactionJob) -> None:
    """Remove a job that could not be queued (its creation is undone)."""
    with database.atomic():
        JobObject.delete().where(JobObject.job == job.seq).execute()
        JobValidationError.delete().where(JobValidationError.job == job.seq).execute()
        RedactionJob.delete().where(RedactionJob.seq == job.seq).execute()


@dataclasses.dataclass
class Page:
    items: list
    has_more: bool


def _page(query, key, descending: bool, limit: int, after, before) -> Page:
    """A page of `query` ordered by `key`, Stripe-style: `after` pages forward from a
    cursor value, `before` backward; `has_more` says whether more lie that way."""
    forward = key.desc() if descending else key.asc()
    backward = key.asc() if descending else key.desc()
    if before is not None:
        query = query.where(key > before if descending else key < before)
        items = list(query.order_by(backward).limit(limit + 1))
        has_more = len(items) > limit
        return Page(list(reversed(items[:limit])), has_more)
    if after is not None:
        query = query.where(key < after if descending else key > after)
    items = list(query.order_by(forward).limit(limit + 1))
    return Page(items[:limit], len(items) > limit)


def list_jobs(
    api_key: str,
    *,
    limit: int,
    starting_after: str | None = None,
    ending_before: str | None = None,
    status: str | None = None,
) -> Page:
    """The account's jobs, newest first."""
    query = RedactionJob.select().where(RedactionJob.account == api_key)
    if status is not None:
        query = query.where(RedactionJob.status == status)

    def cursor(parameter: str, job_id: str | None):
        if job_id is None:
            return None
        job = RedactionJob.get_or_none(
            (RedactionJob.id == job_id) & (RedactionJob.account == api_key)
        )
        if job is None:
            raise InvalidCursor(parameter, job_id)
        return job.seq

    return _page(
        query,
        RedactionJob.seq,
        True,
        limit,
        cursor("starting_after", starting_after),
        cursor("ending_before", ending_before),
    )


def list_validation_errors(
    job: RedactionJob,
    *,
    limit: int,
    starting_after: str | None = None,
    ending_before: str | None = None,
) -> Page:
    """The errors of the job's last validation, in the order of the objects they concern,
    each with its object (`error.target`)."""
    prefix = f"{job.id}_e"

    def cursor(parameter: str, error_id: str | None):
        if error_id is None:
            return None
        position = error_id[len(prefix) :] if error_id.startswith(prefix) else ""
        if (
            not position.isdigit()
            or not JobValidationError.select()
            .where(
                (JobValidationError.job == job.seq) & (JobValidationError.position == int(position))
            )
            .exists()
        ):
            raise InvalidCursor(parameter, error_id)
        return int(position)

    query = (
        JobValidationError.select(JobValidationError, JobObject)
        .join(
            JobObject,
            on=(
                (JobObject.job == JobValidationError.job)
                & (JobObject.position == JobValidationError.position)
            ),
            attr="target",
        )
        .where(JobValidationError.job == job.seq)
    )
    return _page(
        query,
        JobValidationError.position,
        False,
        limit,
        cursor("starting_after", starting_after),
        cursor("ending_before", ending_before),
    )


def validation_error_id(job: RedactionJob, error: JobValidationError) -> str:
    return f"{job.id}_e{error.position}"
