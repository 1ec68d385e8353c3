"""The personal fields never reach the SQLite files in clear (they are sealed); at a 204
the record's data key and its ciphertext are gone from every file; a record stored in
clear before sealing is erased from the files before its 204; no index holds a copy."""

from __future__ import annotations

from models import Transaction, database
from models.store.keystore import DataKey
from models.store.state import current_store
from tests.support import add_account, add_records, files_containing, record, scrubs_committed

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
    store = current_store()
    with database.connection_context():
        sealed = Transaction.get(Transaction.id == "0A0000000123ABCD1")
    with store.keystore.db.connection_context():
        wrapped = (
            DataKey.select()
            .where(DataKey.id == sealed.key_id)
            .bind(store.keystore.db)
            .get()
            .wrapped
        )
    # the search finds what is there: the sealed text and its wrapped key, until the redaction
    assert files_containing(db_path, sealed.body.encode()) == ["redact.db"]
    assert files_containing(db_path, wrapped) == ["redact.db.keystore"]

    with app.test_client() as client:
        for transaction_id in ("0A0000000123ABCD1", "0A0000000123ABCD2"):
            response = client.post(
                URL, json={"id": transaction_id, "product": "sms"}, headers=account
            )
            assert response.status_code == 204
        # At the 204, checked while the service runs with its connections open: the key
        # is gone from every file; the scrub commits a moment later, and the ciphertext
        # with it.
        assert files_containing(db_path, wrapped) == []
        assert store.keystore.fetch([sealed.key_id]) == {}
        scrubs_committed()
        assert files_containing(db_path, MARKER) == []
        assert files_containing(db_path, sealed.body.encode()) == []
    assert files_containing(db_path, b"KEEP-ME-41b2") == []


def test_a_record_stored_in_clear_is_erased_from_the_files_before_the_204(make_app, tmp_path):
    """A record stored before sealing (not yet migrated) has no key to destroy: the scrub
    itself must leave no earlier version of its page in the files."""
    db_path = tmp_path / "redact.db"
    app = make_app(f"sqlite:///{db_path}")
    account = add_account("acct0001")
    add_records(record("0A0000000123ABCD4", text="placeholder"))
    clear = f"{MARKER.decode()}-in-clear " * 3
    with database.atomic():  # as a store written before sealing holds it
        Transaction.update(body=clear, key_id=None).where(
            Transaction.id == "0A0000000123ABCD4"
        ).execute()
    assert files_containing(db_path, MARKER) != []

    with app.test_client() as client:
        response = client.post(
            URL, json={"id": "0A0000000123ABCD4", "product": "sms"}, headers=account
        )
        assert response.status_code == 204
        assert files_containing(db_path, MARKER) == []


def test_no_index_covers_a_personal_column(make_app, sqlite_url):
    make_app(sqlite_url)
    personal = set(Transaction.PERSONAL_COLUMNS) | {"details"}
    with database.connection_context():
        indexes = database.get_indexes("transaction")
    assert indexes, "the table has indexes to check"
    for index in indexes:
        assert not personal & set(index.columns), index
