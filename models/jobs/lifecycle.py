"""Creating a job and the moves a client asks for: validate, run, cancel, update."""

from __future__ import annotations

import datetime
import json
import secrets
from collections.abc import Callable, Iterable

from models.erasure.suppression import suppress_digests
from models.errors import RedactionError
from models.jobs.errors import (
    IdempotencyMismatch,
    InvalidJobRequest,
    InvalidJobUpdate,
    InvalidMove,
    TooManyJobs,
)
from models.jobs.job import (
    BEHAVIORS,
    MOVES,
    STATUSES,
    UNFINISHED,
    JobObject,
    JobValidationError,
    RedactionJob,
    TransactionRef,
    log_transition,
    transition,
)
from models.jobs.objects import store_objects
from models.store.base import database
from models.store.sealing import Sealer
from models.store.state import current_store


def new_job_id() -> str:
    return "rj_" + secrets.token_hex(12)


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
    suppress: bool = False,
) -> tuple[RedactionJob, bool]:
    """Store a new job in status `created`, its objects streamed from the iterables in
    batches (a job may name millions of records). Returns (job, created): with an
    `idempotency_key` the account already used for the same request, the existing job and
    False (once that job has finished it no longer knows its request, and the key alone
    returns it). All or nothing: raises TooManyJobs, IdempotencyMismatch or
    InvalidJobRequest (no object, an unknown product, a subject that is not a phone
    number), or whatever `admit()` raises (called before a new job is stored: the
    queue's admission check), and stores nothing. With `suppress`, the job's numbers are
    suppressed for the account as it is stored (models/erasure/suppression.py): records
    carrying them are refused from then on, whatever becomes of the job."""
    if validation_behavior not in BEHAVIORS:
        raise InvalidJobRequest(f"validation_behavior must be one of {', '.join(BEHAVIORS)}")
    digest = _request_digest(request_body) if idempotency_key is not None else None
    # The key its numbers are sealed under, committed to the key store before them (and
    # discarded unless a new job keeps it).
    keystore = current_store().keystore
    [(key_id, key)] = keystore.create(1)
    try:
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
                    keystore.discard([key_id])
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
                key_id=key_id,
            )
            digests: list[str] | None = [] if suppress else None
            counts = store_objects(job, transactions, subjects, Sealer(key), digests)
            if digests:
                suppress_digests(api_key, digests, now=now, source="job", trace_id=job.id)
            job.transactions, job.subjects = counts
            job.save(only=[RedactionJob.transactions, RedactionJob.subjects])
    except RedactionError:  # refused: nothing was stored (after a database error the
        keystore.discard([key_id])  # commit may have happened, and the key stays)
        raise
    log_transition(job, None, "created")
    return job, True


def _request_digest(body: dict | None) -> str:
    """A keyed digest of a create request, to tell a retry from another request with the
    same Idempotency-Key (keyed: the request may name numbers)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return current_store().subject_key.digest(canonical)


def move(job: RedactionJob, action: str) -> RedactionJob:
    """Apply a client's move (validate, run, cancel) if the job's status allows it (a
    redacting job is cancelled only while it waits for premature records); InvalidMove
    names the current status otherwise. The row changes only if its status is still the
    one read, so concurrent moves cannot both win. Cancelling takes the job's lease away:
    a worker that has just gone on with a waiting job stops at its next batch."""
    target = MOVES[action].get(job.status)
    if target is None or (job.status == "redacting" and not job.waiting_records):
        raise InvalidMove(job.id, action, job.status)
    changes: dict[str, object] = {"lease_owner": None, "lease_until": None}
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
