"""The transaction store, the redaction rules and redaction jobs. Knows nothing of HTTP.

Packages, each built only on those before it (docs/architecture.md draws them):

- store/: the deferred database, opening and closing the store, the group commit, the
  store's secrets, pages
- records/: accounts, transaction records, products and what a redaction scrubs
- proof/: the erasure log (RFC 9162 Merkle trees per account), signing, receipts, the check
- webhooks/: endpoints, the outbox of their events, delivering it
- erasure/: redacting records, legal holds, retention, the audit trail
- intake/: storing records (the records API, `redact transactions load`), reading one back
- jobs/: redaction jobs, from their rows to the service the API and the CLI share
- worker/: the queue and the periodic tasks; PostgreSQL's maintenance
- errors.py: the domain's errors; migrations.py: creating and upgrading tables

`from models import ...` is the face the app uses for what is common.
"""

from models.erasure.audit import AuditEvent
from models.erasure.held import HOLD_MODELS
from models.erasure.redaction import redact_transaction, redact_transaction_async
from models.erasure.retention import RETENTION_MODELS
from models.erasure.settling import settle_pending
from models.erasure.suppression import SUPPRESSION_MODELS
from models.errors import (
    InvalidRecord,
    PrematureRedaction,
    RecordHeld,
    RecordNotFound,
    RedactionError,
    Unprovisioned,
)
from models.intake.loading import load_records
from models.jobs.job import JOB_MODELS
from models.migrations import create_or_upgrade
from models.proof.heads import LOG_MODELS
from models.proof.signing import PublishedKey
from models.records.account import Account
from models.records.products import DIRECTIONS, POLICIES, PRODUCTS, REDACTED
from models.records.transaction import RedactionAudit, Transaction
from models.store.base import BaseModel, database, utcnow
from models.store.state import Store, current_store, open_store
from models.webhooks.rows import WEBHOOK_MODELS

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
    *SUPPRESSION_MODELS,
)
"""Every table, in the order they are created (drop in reverse)."""


def create_tables() -> None:
    """Create the tables that are missing, and bring those of an earlier version up to
    date (models/migrations.py), and the key store's tables; then complete the redactions
    a crash left acknowledged but not yet scrubbed (models/erasure/settling.py)."""
    current_store().keystore.create_tables()
    create_or_upgrade(MODELS)
    settle_pending()


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
