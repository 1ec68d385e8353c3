"""The personal fields never reach the SQLite files in clear (they are sealed), and after a
204 even their ciphertext is gone from the database file and its journal; no index holds
a copy."""

from __future__ import annotations

from models import Transaction, database
from tests.support import add_account, add_records, files_containing, record

URL = "/v1/redact/transaction"
MARKER = b"MARKER-7f3a9c"


def test_scrubbed_bytes_are_gone_from_the_files(make_app, tmp_path):
    db_path = tmp_path / "redact.db"
    app = make_app(f"sqlite:///{db_path}")
    account = add_account("acct0001")
    marker = MARKER.decode()
    add_records(
        record(
            "0A0000000123ABCD1",
            **{"from": f"{marker}-from", "to": f"{marker}-to"},
            text=f"{marker}-text " * 3,
        ),
        # a body longer than a page lives in overflow pages, which are freed on update
        record("0A0000000123ABCD2", text=f"{marker}-long " * 2000, owner=f"{marker}-x"),
        # a record that is not redacted keeps its (sealed) text
        record("0A0000000123ABCD3", text="KEEP-ME-41b2"),
    )
    assert files_containing(db_path, MARKER) == [], "sealed before redaction"
    with database.connection_context():
        sealed = Transaction.get(Transaction.id == "0A0000000123ABCD1").body
    # the search finds what is there: the sealed text, until the redaction
    assert files_containing(db_path, sealed.encode()) == ["redact.db"]

    with app.test_client() as client:
        for transaction_id in ("0A0000000123ABCD1", "0A0000000123ABCD2"):
            response = client.post(
                URL, json={"id": transaction_id, "product": "sms"}, headers=account
            )
            assert response.status_code == 204
        # checked while the service is still running, with its connections open
        assert files_containing(db_path, MARKER) == []
        assert files_containing(db_path, sealed.encode()) == []
    assert files_containing(db_path, b"KEEP-ME-41b2") == []


def test_no_index_covers_a_personal_column(make_app, sqlite_url):
    make_app(sqlite_url)
    personal = set(Transaction.PERSONAL_COLUMNS) | {"details"}
    with database.connection_context():
        indexes = database.get_indexes("transaction")
    assert indexes, "the table has indexes to check"
    for index in indexes:
        assert not personal & set(index.columns), index
