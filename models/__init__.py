"""The transaction store and the redaction rules. Knows nothing of HTTP."""

from .account import Account
from .db import BaseModel, database, open_database
from .errors import InvalidRecord, PrematureRedaction, RecordNotFound, RedactionError, Unprovisioned
from .job import JOB_MODELS
from .loading import load_records
from .policy import DIRECTIONS, POLICIES, PRODUCTS, REDACTED
from .redaction import redact_transaction, redact_transaction_async
from .transaction import RedactionAudit, Transaction

MODELS = (Account, Transaction, RedactionAudit, *JOB_MODELS)
"""Every table, in the order they are created (drop in reverse)."""


def create_tables() -> None:
    """Create the tables that are missing, and bring those of an earlier version up to
    date (models/schema.py)."""
    from .schema import create_or_upgrade

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
    "RecordNotFound",
    "RedactionAudit",
    "RedactionError",
    "Transaction",
    "Unprovisioned",
    "create_tables",
    "database",
    "load_records",
    "open_database",
    "redact_transaction",
    "redact_transaction_async",
]
