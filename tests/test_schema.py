"""A store made by an earlier version (before the number index and the jobs) is brought up
to date at start, and a subject job then finds its old records."""

from __future__ import annotations

import sqlite3

from models import Transaction, create_tables, current_store, database

from .support import FIRST_RELEASE, store_at


def test_an_earlier_store_is_upgraded_and_its_numbers_indexed(tmp_path):
    path = tmp_path / "old.db"
    connection = sqlite3.connect(path)
    connection.executescript(FIRST_RELEASE)
    connection.close()

    with store_at(f"sqlite:///{path}", tables=True):
        create_tables()  # again: nothing more to do
        with database.connection_context():
            key = current_store().subject_key.hash("447700900777")
            old1, old2 = Transaction.get_by_id("OLD1"), Transaction.get_by_id("OLD2")
            assert (old1.sender_key, old1.recipient_key) == (None, key)  # 'Vonage' is no number
            assert old2.sender_key == key and old2.recipient_key is not None
            assert "redaction_job" in database.get_tables()
            indexes = {index.name for index in database.get_indexes("transaction")}
            assert {"transaction_api_key_sender_key", "transaction_api_key_recipient_key"} <= (
                indexes
            )
