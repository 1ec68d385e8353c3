"""The transaction store, the redaction rules and redaction jobs. Knows nothing of HTTP.

A newcomer's map (docs/architecture.md has the whole of it):

- base.py: the deferred database, the base model, UTC timestamps, the clock
- store.py: opening the store (`open_store`): database, group commit, subject key
- group_commit.py, prepared.py: how writes share transactions; SQL generated once
- account.py, transaction.py: accounts and the records with their audit trail
- policy.py, redaction.py: what a redaction scrubs, and doing it
- subjects.py: the keyed index of phone numbers
- records.py: the record schema, storing records (API and command) and reading one back;
  loading.py: `redact transactions load`
- retention.py: Auto-redact policies and the retention pass; holds.py: legal holds;
  audit.py: the audit trail of policy and hold changes
- merkle.py, log.py, log_check.py, signing.py, keyfile.py: the erasure log (RFC 9162
  Merkle trees per account),
  its signed tree heads and the signing key; receipts.py: signed proofs of erasure
- webhooks.py: webhook endpoints, the outbox of their events, and delivering it
- migrations.py: creating and upgrading tables; maintenance.py: PostgreSQL's VACUUM
- jobs/: redaction jobs, from their rows to the queue and the service the API and the
  CLI share
"""

from .account import Account
from .audit import AuditEvent
from .base import BaseModel, database, utcnow
from .errors import (
    InvalidRecord,
    PrematureRedaction,
    RecordHeld,
    RecordNotFound,
    RedactionError,
    Unprovisioned,
)
from .holds import HOLD_MODELS
from .jobs.job import JOB_MODELS
from .loading import load_records
from .log import LOG_MODELS
from .migrations import create_or_upgrade
from .policy import DIRECTIONS, POLICIES, PRODUCTS, REDACTED
from .redaction import redact_transaction, redact_transaction_async
from .retention import RETENTION_MODELS
from .signing import PublishedKey
from .store import Store, current_store, open_store
from .transaction import RedactionAudit, Transaction
from .webhooks import WEBHOOK_MODELS

MODELS = (
    Account,
    Transaction,
    RedactionAudit,
    AuditEvent,
    *JOB_MODELS,
    *HOLD_MODELS,
    *RETENTION_MODELS,
    *LOG_MODELS,
    PublishedKey,
    *WEBHOOK_MODELS,
)
"""Every table, in the order they are created (drop in reverse)."""


def create_tables() -> None:
    """Create the tables that are missing, and bring those of an earlier version up to
    date (models/migrations.py)."""
    create_or_upgrade(MODELS)


__all__ = [
    "DIRECTIONS",
    "MODELS",
    "POLICIES",
    "PRODUCTS",
    "REDACTED",
    "Account",
    "BaseModel",
    "InvalidRecord",
    "PrematureRedaction",
    "RecordHeld",
    "RecordNotFound",
    "RedactionAudit",
    "RedactionError",
    "Store",
    "Transaction",
    "Unprovisioned",
    "create_tables",
    "current_store",
    "database",
    "load_records",
    "open_store",
    "redact_transaction",
    "redact_transaction_async",
    "utcnow",
]
