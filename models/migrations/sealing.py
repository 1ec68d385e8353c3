"""Sealing what a store written before per-record keys holds in clear: each unredacted
record's personal fields, and the numbers of unfinished jobs. Resumable (what is sealed is
not read again), a batch a transaction, each batch's keys committed to the key store
before the rows that need them. Copies of the store taken before this ran hold those
fields in clear: they are outside the guarantee (docs/erasure.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from models.jobs.job import JobObject, RedactionJob, subject_place
from models.records.sealed import seal_fields
from models.records.transaction import Transaction
from models.store.base import database
from models.store.sealing import Sealer
from models.store.state import current_store

_CLEAR = (
    Transaction.key_id.is_null()
    & Transaction.redacted_at.is_null()
    & (
        Transaction.sender.is_null(False)
        | Transaction.recipient.is_null(False)
        | Transaction.body.is_null(False)
        | Transaction.details.is_null(False)
    )
)


def records_in_clear() -> int:
    with database.connection_context():
        return Transaction.select().where(_CLEAR).count()


def seal_records(batch: int = 1000, progress: Callable[[int, int], None] | None = None) -> int:
    """Seal every unredacted record stored in clear; how many were sealed."""
    keystore = current_store().keystore
    total = records_in_clear()
    done = 0
    fields = (
        Transaction.id,
        Transaction.account,
        Transaction.product,
        Transaction.sender,
        Transaction.recipient,
        Transaction.body,
        Transaction.details,
    )
    with database.connection_context():
        while True:
            rows: list[Any] = list(
                Transaction.select(*fields)
                .where(_CLEAR)
                .order_by(Transaction.id, Transaction.account)
                .limit(batch)
                .tuples()
            )
            if not rows:
                break
            keys = keystore.create(len(rows))
            with database.atomic():
                for (record_id, account, product, *values), (key_id, key) in zip(
                    rows, keys, strict=True
                ):
                    details = Transaction.details.python_value(values[3])
                    sender, recipient, body, details = seal_fields(
                        key, account, record_id, product, values[0], values[1], values[2], details
                    )
                    Transaction.update(
                        sender=sender,
                        recipient=recipient,
                        body=body,
                        details=details,
                        key_id=key_id,
                    ).where(
                        (Transaction.id == record_id)
                        & (Transaction.account == account)
                        & Transaction.key_id.is_null()
                    ).execute()
            done += len(rows)
            if progress is not None:
                progress(done, total)
    return done


def seal_job_subjects() -> int:
    """Seal the numbers unfinished jobs hold in clear, each job's under a key of its own."""
    keystore = current_store().keystore
    sealed = 0
    with database.connection_context():
        jobs = list(
            RedactionJob.select()
            .join(JobObject, on=(JobObject.job == RedactionJob.seq))
            .where(JobObject.subject.is_null(False))
            .distinct()
        )
        for job in jobs:
            key_id, key = job.key_id, None
            if key_id is not None:
                key = keystore.fetch([key_id]).get(key_id)
            if key is None:
                [(key_id, key)] = keystore.create(1)
            sealer = Sealer(key)
            with database.atomic():
                RedactionJob.update(key_id=key_id).where(RedactionJob.seq == job.seq).execute()
                for item in JobObject.select().where(
                    (JobObject.job == job.seq) & JobObject.subject.is_null(False)
                ):
                    JobObject.update(
                        sealed_subject=sealer.seal(
                            subject_place(job.seq, item.position), item.subject or ""
                        ),
                        subject=None,
                    ).where(
                        (JobObject.job == job.seq) & (JobObject.position == item.position)
                    ).execute()
                    sealed += 1
    return sealed


__all__ = ["records_in_clear", "seal_job_subjects", "seal_records"]
