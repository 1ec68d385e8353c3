"""The audit trail of changes to what the store may do with people's data: retention
policies changed, legal holds created and released. (Each redaction has its own entry,
RedactionAudit in models/records/transaction.py.) Entries hold no personal data."""

from __future__ import annotations

import datetime
import getpass

import peewee

from models.proof import entries
from models.records.transaction import JSONField
from models.store.base import BaseModel, UTCDateTimeField


class AuditEvent(BaseModel):
    """Who (`actor`: the account through the API, or the operator's command) did what
    (`action`) to which object (`target`), when, and what it was before and after."""

    at = UTCDateTimeField()
    api_key = peewee.CharField(max_length=64, index=True)
    action = peewee.CharField(max_length=40)
    target = peewee.CharField(max_length=64)
    before = JSONField(null=True)
    after = JSONField(null=True)
    actor = peewee.CharField(max_length=100)
    trace_id = peewee.CharField(max_length=64, null=True)


def record_event(
    *,
    api_key: str,
    action: str,
    target: str,
    at: datetime.datetime,
    actor: str,
    before=None,
    after=None,
    trace_id: str | None = None,
) -> None:
    """Add an entry (inside the caller's transaction: it commits with the change), and
    its entry in the account's erasure log (without the free text of a hold's reason or
    the operator's login)."""
    entries.append(
        [
            (
                api_key,
                action,
                {
                    "target": target,
                    "by": actor.split(":", 1)[0],
                    "before": _logged(before),
                    "after": _logged(after),
                    "trace_id": trace_id,
                },
            )
        ],
        at,
    )
    # The columns by name, as a job row is created (models/jobs): alike in shape only.
    AuditEvent.create(
        at=at,
        api_key=api_key,
        action=action,
        target=target,
        before=before,
        after=after,
        actor=actor,
        trace_id=trace_id,
    )


def _logged(state):
    if isinstance(state, dict):
        return {key: value for key, value in state.items() if key != "reason"}
    return state


def operator() -> str:
    """The actor of a change made with the `redact` command: the operator's login."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no login name for this uid
        return "cli"
