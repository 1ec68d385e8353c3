"""Transaction records and the audit trail of their redaction."""

from __future__ import annotations

import json

import peewee

from models.records.account import Account
from models.store.base import BaseModel, UTCDateTimeField

_ENCODER = json.JSONEncoder(separators=(",", ":"))  # json.dumps with options builds one per call


class JSONField(peewee.TextField):
    def db_value(self, value):
        return None if value is None else _ENCODER.encode(value)

    def python_value(self, value):
        return None if value is None else json.loads(value)


class Transaction(BaseModel):
    """One record of the long-term store. Personal fields: sender, recipient, body and any
    product-specific detail the product's scrub policy does not declare kept.

    A record is named by its id within its account: two accounts may hold the same id, and
    neither sees the other's. The key is (id, account), id first, so that a lookup by id
    (what a redaction names) uses it."""

    id = peewee.CharField(max_length=64)
    account = peewee.ForeignKeyField(
        Account, backref="transactions", column_name="api_key", on_delete="CASCADE"
    )
    api_key: str  # the account's key, without loading the account
    product = peewee.CharField(max_length=20)
    direction = peewee.CharField(max_length=10, null=True)
    created_at = UTCDateTimeField()
    sender = peewee.TextField(null=True)
    recipient = peewee.TextField(null=True)
    body = peewee.TextField(null=True)
    details = JSONField(null=True)
    redacted_at = UTCDateTimeField(null=True)
    # Keyed hashes of the two numbers (models/store/keys.py), cleared by redaction.
    sender_key = peewee.CharField(max_length=32, null=True)
    recipient_key = peewee.CharField(max_length=32, null=True)
    # The data key the personal fields are sealed under (models/records/sealed.py), in the
    # key store; None for a record stored before sealing (until `redact migrate` seals it).
    key_id = peewee.CharField(max_length=32, null=True)

    PERSONAL_COLUMNS = ("sender", "recipient", "body")
    SUBJECT_COLUMNS = ("sender_key", "recipient_key")

    class Meta:
        primary_key = peewee.CompositeKey("id", "account")
        indexes = (
            (("account", "sender_key"), False),
            (("account", "recipient_key"), False),
        )


class RedactionAudit(BaseModel):
    """Who redacted which record, when, under which trace id. Holds no personal data."""

    id = peewee.AutoField()
    at = UTCDateTimeField()
    api_key = peewee.CharField(max_length=64, index=True)
    transaction_id = peewee.CharField(max_length=64, index=True)
    product = peewee.CharField(max_length=20)
    trace_id = peewee.CharField(max_length=64)
    source = peewee.CharField(max_length=20, default="api")
    # The redaction's entry in the account's erasure log (models/proof/entries.py); None for those
    # made before the log existed.
    log_index = peewee.BigIntegerField(null=True)


# Retention finds the records of an account and product past a moment, oldest first, among
# those not yet redacted (which leave this index as they are redacted).
Transaction.add_index(
    Transaction.index(
        Transaction.account,
        Transaction.product,
        Transaction.created_at,
        Transaction.id,
        name="transaction_unredacted_by_age",
    ).where(Transaction.redacted_at.is_null())
)
