"""Which records a job's objects name: the queries validation and the run share."""

from __future__ import annotations

from models.jobs.job import JobObject, RedactionJob
from models.records.transaction import Transaction
from models.store.prepared import PreparedQuery


def page_after(query, mark):
    """`query` (over JobObject) narrowed to a page of the job's transaction objects after a
    position, in order: marks `job`, `after` and `limit`."""
    return (
        query.where(
            (JobObject.job == mark("job"))
            & (JobObject.position > mark("after"))
            & JobObject.transaction_id.is_null(False)
        )
        .order_by(JobObject.position)
        .limit(mark("limit"))
    )


# A page of the job's transaction objects after a position, in order.
OBJECTS_AFTER = PreparedQuery(
    lambda mark, _: page_after(
        JobObject.select(
            JobObject.position, JobObject.transaction_id, JobObject.product, JobObject.direction
        ),
        mark,
    )
)


def subject_records(job: RedactionJob, key: str):
    """The account's unredacted records where the number hashed to `key` appears."""
    return (
        (Transaction.account == job.account_id)
        & Transaction.redacted_at.is_null()
        & ((Transaction.sender_key == key) | (Transaction.recipient_key == key))
    )
