"""The transaction store and the redaction rules. Knows nothing of HTTP."""

from .account import Account
from .db import BaseModel, database, open_database
from .errors import InvalidRecord, PrematureRedaction, RecordNotFound, RedactionError, Unprovisioned
from .loading import load_records
from .policy import DIRECTIONS, POLICIES, PRODUCTS, REDACTED
from .redaction import redact_transaction
from .transaction import MODELS, RedactionAudit, Transaction, create_tables

__all__ = [
    "Account", "BaseModel", "database", "open_database", "InvalidRecord",
    "PrematureRedaction", "RecordNotFound", "RedactionError", "Unprovisioned", "load_records",
    "DIRECTIONS", "POLICIES", "PRODUCTS", "REDACTED", "redact_transaction", "MODELS",
    "RedactionAudit", "Transaction", "create_tables",
]
