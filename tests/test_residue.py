"""After a 204 the original bytes of the scrubbed fields are gone from the SQLite database
file and its write-ahead log, and no index holds a copy."""

from __future__ import annotations

import pathlib

import pytest

from models import Transaction, database

from .conftest import add_account, add_records, record

URL = "/v1/redact/transaction"
MARKER = b"MARKER-7f3a9c"


def files_containing(db_path: pathlib.Path, marker: bytes) -> list[str]:
    found = []
    for path in db_path.parent.iterdir():
        if path.name.startswith(db_path.name) and marker in path.read_bytes():
            found.append(path.name)
    return found


@pytest.fixture
def sqlite_app(make_app, tmp_path):
    db_path = tmp_path / "redact.db"
    return make_app(f"sqlite:///{db_path}"), db_path


def test_scrubbed_bytes_are_gone_from_the_files(sqlite_app):
    app, db_path = sqlite_app
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
        # a record that is not redacted keeps its marker: the search does find markers
        record("0A0000000123ABCD3", text="KEEP-ME-41b2"),
    )
    assert files_containing(db_path, MARKER), "the marker should be on disk before redaction"

    with app.test_client() as client:
        for transaction_id in ("0A0000000123ABCD1", "0A0000000123ABCD2"):
            response = client.post(
                URL, json={"id": transaction_id, "product": "sms"}, headers=account
            )
            assert response.status_code == 204
        # checked while the service is still running, with its connections open
        assert files_containing(db_path, MARKER) == []
    assert files_containing(db_path, b"KEEP-ME-41b2")


def test_no_index_covers_a_personal_column(sqlite_app):
    personal = set(Transaction.PERSONAL_COLUMNS) | {"details"}
    with database.connection_context():
        for index in database.get_indexes("transaction"):
            assert not personal & set(index.columns), index
