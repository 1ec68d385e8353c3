"""A store made by an earlier version (before the number index and the jobs) is brought up
to date at start, and a subject job then finds its old records."""

from __future__ import annotations

import sqlite3

from models import Transaction, create_tables, current_store, database, open_store

from .conftest import SUBJECT_KEY

# The tables as the first release created them.
FIRST_RELEASE = """
CREATE TABLE "account" ("api_key" VARCHAR(64) NOT NULL PRIMARY KEY,
  "secret_hash" VARCHAR(200) NOT NULL, "products" VARCHAR(200) NOT NULL,
  "created_at" DATETIME NOT NULL);
CREATE TABLE "transaction" ("id" VARCHAR(64) NOT NULL PRIMARY KEY,
  "api_key" VARCHAR(64) NOT NULL, "product" VARCHAR(20) NOT NULL, "direction" VARCHAR(10),
  "created_at" DATETIME NOT NULL, "sender" TEXT, "recipient" TEXT, "body" TEXT,
  "details" TEXT, "redacted_at" DATETIME,
  FOREIGN KEY ("api_key") REFERENCES "account" ("api_key") ON DELETE CASCADE);
CREATE INDEX "transaction_api_key" ON "transaction" ("api_key");
CREATE TABLE "redaction_audit" ("id" INTEGER NOT NULL PRIMARY KEY, "at" DATETIME NOT NULL,
  "api_key" VARCHAR(64) NOT NULL, "transaction_id" VARCHAR(64) NOT NULL,
  "product" VARCHAR(20) NOT NULL, "trace_id" VARCHAR(64) NOT NULL,
  "source" VARCHAR(20) NOT NULL);
INSERT INTO "account" VALUES ('acct0001', 'x', 'sms,voice', '2026-01-01 00:00:00');
INSERT INTO "transaction" VALUES ('OLD1', 'acct0001', 'sms', 'outbound',
  '2026-01-01 00:00:00', 'Vonage', '+44 7700 900777', 'hello', NULL, NULL);
INSERT INTO "transaction" VALUES ('OLD2', 'acct0001', 'voice', NULL,
  '2026-01-01 00:00:00', '447700900777', '447700900001', NULL, NULL, NULL);
"""


def test_an_earlier_store_is_upgraded_and_its_numbers_indexed(tmp_path):
    path = tmp_path / "old.db"
    connection = sqlite3.connect(path)
    connection.executescript(FIRST_RELEASE)
    connection.close()

    open_store(f"sqlite:///{path}", subject_key=SUBJECT_KEY.encode())
    create_tables()
    create_tables()  # again: nothing more to do
    with database.connection_context():
        key = current_store().subject_key.hash("447700900777")
        old1, old2 = Transaction.get_by_id("OLD1"), Transaction.get_by_id("OLD2")
        assert (old1.sender_key, old1.recipient_key) == (None, key)  # 'Vonage' is no number
        assert old2.sender_key == key and old2.recipient_key is not None
        assert "redaction_job" in database.get_tables()
        indexes = {index.name for index in database.get_indexes("transaction")}
        assert {"transaction_api_key_sender_key", "transaction_api_key_recipient_key"} <= indexes
    database.obj.close_all()
