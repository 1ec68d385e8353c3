"""A store made by an earlier version (records keyed by id alone, before the number index
and the jobs) is brought up to date at start: its records are keyed by id and account,
and a subject job then finds its old records."""

from __future__ import annotations

import sqlite3

import peewee
import pytest

from models import MODELS, Account, Transaction, create_tables, current_store, database
from tests.support import FIRST_RELEASE, cli, files_containing, opened, store_at


def _make_first_release(url: str, tmp_path) -> None:
    if url.startswith("sqlite"):
        connection = sqlite3.connect(url.removeprefix("sqlite:///"))
        connection.executescript(FIRST_RELEASE)
        connection.close()
        return
    script = FIRST_RELEASE.replace("DATETIME", "TIMESTAMP").replace(
        '"id" INTEGER NOT NULL PRIMARY KEY', '"id" SERIAL PRIMARY KEY'
    )
    with store_at(url), database.connection_context():
        database.drop_tables(MODELS, safe=True, cascade=True)
        database.execute_sql(script)


def test_an_earlier_store_is_upgraded_and_its_numbers_indexed(database_url, tmp_path):
    _make_first_release(database_url, tmp_path)

    with store_at(database_url, tables=True):
        create_tables()  # again: nothing more to do
        with database.connection_context():
            assert database.get_primary_keys("transaction") == ["id", "api_key"]
            key = current_store().subject_key.hash("447700900777")
            old1 = Transaction.get(Transaction.id == "OLD1")
            old2 = Transaction.get(Transaction.id == "OLD2")
            assert (old1.sender_key, old1.recipient_key) == (None, key)  # 'Vonage' is no number
            assert old2.sender_key == key and old2.recipient_key is not None
            assert (old1.body, old1.api_key, str(old1.created_at)) == (
                "hello",
                "acct0001",
                "2026-01-01 00:00:00+00:00",
            )
            assert "redaction_job" in database.get_tables()
            assert "transaction_before_account_key" not in database.get_tables()
            indexes = {index.name for index in database.get_indexes("transaction")}
            assert {"transaction_api_key_sender_key", "transaction_api_key_recipient_key"} <= (
                indexes
            )

            # Another account may now hold the same id; the same account may not.
            Account.create(api_key="acct0002", secret_hash="x", products="sms")
            row = {"product": "sms", "direction": "outbound", "created_at": old1.created_at}
            Transaction.insert(id="OLD1", account="acct0002", **row).execute()
            assert Transaction.select().where(Transaction.id == "OLD1").count() == 2
            with pytest.raises(peewee.IntegrityError), database.atomic():
                Transaction.insert(id="OLD1", account="acct0001", **row).execute()


def test_migrate_seals_the_records_an_earlier_store_holds_in_clear(env, tmp_path):
    """`redact migrate` (the release step) seals what was stored in clear, with its
    progress on stderr; after it no file of the store holds the fields, the records read
    as before, and a second run has nothing left to do."""
    path = tmp_path / "cli.db"
    connection = sqlite3.connect(path)
    connection.executescript(FIRST_RELEASE)
    connection.close()
    assert files_containing(path, b"+44 7700 900777") == ["cli.db"]

    first = cli({**env, "REDACT_PROGRESS_SECONDS": "0"}, "migrate", check=True)
    assert "sealed 2 of 2 records" in first.stderr
    assert "sealed 2 records" in first.stdout
    assert files_containing(path, b"+44 7700 900777") == []
    assert files_containing(path, b"hello") == []
    with store_at(env["DATABASE_URL"]), database.connection_context():
        old1 = opened(Transaction.get(Transaction.id == "OLD1"))
        assert (old1.sender, old1.recipient, old1.body) == ("Vonage", "+44 7700 900777", "hello")
        assert old1.key_id is not None
    again = cli(env, "migrate", check=True)
    assert "sealed" not in again.stdout + again.stderr
