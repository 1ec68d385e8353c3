"""A redaction job's rows and state machine.

A job names records (`objects.transactions`) and phone numbers (`objects.subjects`: every
record of the account where the number appears). It is created, validated, run and
cancelled through the moves in `MOVES` (models/jobs/lifecycle.py); the work itself runs
in queue workers (models/worker/queue.py). No HTTP here.
"""

from __future__ import annotations

import dataclasses
import logging

import peewee

from models.records.account import Account
from models.store.base import BaseModel, UTCDateTimeField
from models.store.sealing import Sealer, place

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
    "cancel": {"ready": "canceling", "failed": "canceling", "redacting": "canceling"},
}
"""The moves a client asks for, as {action: {from status: to status}}. The service makes
the others: created -> validating -> ready | failed, redacting -> succeeded and
canceling -> canceled. A redacting job can be cancelled only while it waits for premature
records (see lifecycle.move): a run at work is not stopped halfway through a batch."""

CLEARED_SUBJECT = "REDACTED"

logger = logging.getLogger("redact.jobs.job")


def log_transition(job: RedactionJob, old: str | None, new: str, moved: int = 1) -> None:
    """One structured log line per status change that took place (`moved` rows): ids and
    statuses only."""
    if moved:
        logger.info(
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


class RedactionJob(BaseModel):
    """One job. `seq` orders jobs (newest first in lists); `id` is the public name."""

    seq = peewee.AutoField()
    id = peewee.CharField(max_length=40, unique=True)
    account = peewee.ForeignKeyField(
        Account, column_name="api_key", on_delete="CASCADE", object_id_name="account_id"
    )
    account_id: str  # the account's key, without loading the account
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
    # Records the run left for later because they are premature, and when the last of
    # them comes of age (when the run goes on); 0 and None when nothing waits.
    waiting_records = peewee.IntegerField(default=0)
    waiting_until = UTCDateTimeField(null=True)
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
    # The data key the job's numbers are sealed under (destroyed when the job finishes).
    key_id = peewee.CharField(max_length=32, null=True)
    # Its `job.finished` entry in the account's erasure log, once finished.
    log_index = peewee.BigIntegerField(null=True)

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


def subject_place(job_seq: int, position: int) -> bytes:
    """The associated data of a job's sealed number: the job and the object's position."""
    return place("job", str(job_seq), str(position), "subject")


class JobObject(BaseModel):
    """One object of a job: a transaction (id, product, direction) or a subject (the number
    as given, and its keyed hash). A subject's number is cleared when the job finishes."""

    job = peewee.ForeignKeyField(RedactionJob, on_delete="CASCADE")
    job_id: int  # the job's seq, without loading the job
    position = peewee.IntegerField()
    transaction_id = peewee.CharField(max_length=64, null=True)
    product = peewee.CharField(max_length=20, null=True)
    direction = _DirectionField(max_length=10, default="")
    subject = peewee.CharField(max_length=32, null=True)  # stores before sealing only
    subject_key = peewee.CharField(max_length=32, null=True)
    done = peewee.BooleanField(default=False)
    # A transaction the run found premature: tried again when the run goes on.
    waiting = peewee.BooleanField(default=False)
    # The number as given, sealed under the job's data key (models/store/sealing.py).
    sealed_subject = peewee.TextField(null=True)

    class Meta:
        table_name = "redaction_job_object"
        primary_key = peewee.CompositeKey("job", "position")
        indexes = (
            (("transaction_id", "job", "product", "direction"), True),
            (("subject_key", "job"), True),
        )

    def as_object(self, key: bytes | None = None) -> dict:
        """The object as the API shows it; a subject's number opened with the job's data
        key (`key`), or CLEARED_SUBJECT once the job has forgotten it."""
        if self.transaction_id is None:
            if self.sealed_subject is not None and key is not None:
                where = subject_place(self.job_id, self.position)
                return {"subject": Sealer(key).open(where, self.sealed_subject) or CLEARED_SUBJECT}
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


class JobLogRange(BaseModel):
    """Positions start..start+count-1 of the account's erasure log are redactions of this
    job (one row a batch): its receipt covers its records by these ranges."""

    job = peewee.ForeignKeyField(RedactionJob, on_delete="CASCADE")
    start = peewee.BigIntegerField()
    count = peewee.IntegerField()

    class Meta:
        table_name = "redaction_job_log_range"
        primary_key = peewee.CompositeKey("job", "start")


JOB_MODELS = (RedactionJob, JobObject, JobValidationError, JobLogRange)


@dataclasses.dataclass(frozen=True)
class TransactionRef:
    id: str
    product: str
    type: str | None = None
