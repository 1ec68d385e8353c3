"""What redacting a record writes, whichever path redacts it (the Redact API, a job, the
retention pass, or an `immediate` policy as the record arrives): its personal fields as
the scrub leaves them (`scrub`), the names of those fields (`scrubbed_fields`), and its
audit row and erasure-log entry (`audit_redactions`).
"""

from __future__ import annotations

import datetime
import typing
from collections.abc import Sequence

from models.proof import entries
from models.records.products import POLICIES, REDACTED, scrub_details
from models.records.transaction import RedactionAudit
from models.store.prepared import PreparedQuery, Statement, run_together


def scrub(
    product: str, sender: str | None, recipient: str | None, body: str | None, details
) -> tuple[str | None, str | None, str | None, dict | None]:
    """(sender, recipient, body, details) as a redaction leaves them: each personal field
    that holds a value REDACTED, the product's personal details scrubbed."""
    return (
        None if sender is None else REDACTED,
        None if recipient is None else REDACTED,
        None if body is None else REDACTED,
        scrub_details(product, details) if details else details,
    )


def scrubbed_fields(product: str, sender, recipient, body, details: dict | None) -> list[str]:
    """The names of the fields a redaction of such a record scrubs."""
    names = []
    if sender is not None:
        names.append("from")
    if recipient is not None:
        names.append("to")
    if body is not None:
        names.append("text")
    if details:
        kept = POLICIES[product].kept_details
        names.extend(f"details.{key}" for key in sorted(details) if key not in kept)
    return names


class Redacted(typing.NamedTuple):
    """A record just scrubbed, as its audit row and its log entry name it (a named tuple:
    a job makes millions)."""

    api_key: str
    transaction_id: str
    product: str
    direction: str | None
    fields: list[str]
    source: str
    trace_id: str
    at: datetime.datetime
    key: str | None = None
    """The id of the data key the redaction destroyed (None: the record had none)."""


def audit_redactions(redacted: Sequence[Redacted], now: datetime.datetime) -> list[int]:
    """In the caller's transaction, for each record: a `redaction` entry appended to its
    account's erasure log (at `now`), and its RedactionAudit row (at the record's `at`)
    naming the entry's position. The positions, in order."""
    writes: list[Statement] = []  # sent together (one round trip on PostgreSQL)
    positions = entries.append(
        [
            log_entry(
                r.api_key,
                (r.transaction_id, r.product, r.direction),
                r.fields,
                r.source,
                r.trace_id,
                r.key,
            )
            for r in redacted
        ],
        now,
        writes,
    )
    stamps: dict[datetime.datetime, object] = {}  # a job's records share one `at`
    audit = []
    for r, position in zip(redacted, positions, strict=True):
        stamp = stamps.get(r.at)
        if stamp is None:
            stamp = stamps[r.at] = RedactionAudit.at.db_value(r.at)
        audit.append(
            (stamp, r.api_key, r.transaction_id, r.product, r.trace_id, r.source, position)
        )
    writes.append(_AUDIT.statement(len(audit), {"audit": audit}))
    run_together(writes)
    return positions


def log_entry(
    api_key: str,
    record: tuple[str, str, str | None],
    fields: list[str],
    source: str,
    trace_id: str,
    key: str | None = None,
) -> tuple[str, str, dict]:
    """A `redaction` entry of the erasure log: the record (id, product, type), the names
    of the fields scrubbed, the id of the data key destroyed, how (source) and under which
    job or trace id."""
    transaction_id, product, direction = record
    return (
        api_key,
        "redaction",
        {
            "record": {"id": transaction_id, "product": product, "type": direction},
            "fields": fields,
            "source": source,
            "job": trace_id if source == "job" else None,
            "key": key,
            "trace_id": trace_id,
        },
    )


# The prepared multi-row INSERT, as for a job's objects: another table, other columns.
_AUDIT_FIELDS = (
    RedactionAudit.at,
    RedactionAudit.api_key,
    RedactionAudit.transaction_id,
    RedactionAudit.product,
    RedactionAudit.trace_id,
    RedactionAudit.source,
    RedactionAudit.log_index,
)
# Built once per batch size (see PreparedQuery): a job writes a batch at a time.
_AUDIT = PreparedQuery(
    lambda mark, n: RedactionAudit.insert_many(
        [[mark("audit", i, j) for j in range(len(_AUDIT_FIELDS))] for i in range(n)],
        fields=_AUDIT_FIELDS,
    )
)
