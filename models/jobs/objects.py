"""A new job's objects, stored in batches as they stream in: transactions by id,
product and type, subjects as their keyed hash and their number sealed under the job's
data key (and, for an erase-and-suppress job, the suppression list's hash)."""

from __future__ import annotations

from collections.abc import Iterable

from models.erasure.suppression import hasher
from models.jobs.errors import InvalidJobRequest
from models.jobs.job import JobObject, RedactionJob, TransactionRef, subject_place
from models.records.products import DIRECTIONS, PRODUCTS, direction_of
from models.store.prepared import PreparedQuery
from models.store.sealing import Sealer
from models.store.state import current_store


def store_objects(
    job: RedactionJob,
    transactions: Iterable[TransactionRef],
    subjects: Iterable[str],
    sealer: Sealer,
    digests: list[str] | None = None,
    batch_size: int = 1000,
) -> tuple[int, int]:
    """Insert the objects in batches; returns how many transactions and subjects the job
    names. An object named again as before (the same number in another format, too) is
    stored once; a transaction id named with another product or type is a second object
    (which validation will find unknown)."""
    subject_key = current_store().subject_key
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
        if "\x00" in ref.id:  # PostgreSQL's text cannot hold one (the API refuses it first)
            raise InvalidJobRequest(f"transaction {ref.id!r}: a NUL character is not allowed")
        batch.append(
            (
                job.seq,
                position,
                ref.id,
                ref.product,
                direction_of(ref.product, ref.type) or "",
                None,
                None,
                False,
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
        sealed = sealer.seal(subject_place(job.seq, position), number)
        if digests is not None:
            digests.append(hasher().digest(number) or "")
        batch.append((job.seq, position, None, None, "", sealed, key, False, False))
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
    JobObject.sealed_subject,
    JobObject.subject_key,
    JobObject.done,
    JobObject.waiting,
)
# Built once per batch size (see PreparedQuery); values go in as the database stores them.
_INSERT_OBJECTS = PreparedQuery(
    lambda mark, n: JobObject.insert_many(
        [[mark("o", i, j) for j in range(len(_OBJECT_FIELDS))] for i in range(n)],
        fields=_OBJECT_FIELDS,
    ).on_conflict_ignore()
)
