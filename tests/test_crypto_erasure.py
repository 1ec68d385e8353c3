"""Erasure that reaches every copy: personal fields are sealed under per-record keys kept
in a key store apart from the data, and a redaction destroys the key before it is
acknowledged. A backup of the data store taken before a redaction, restored beside the
live key store after it, opens nothing of the redacted record; a copy of the key store
older than the rotation bound unwraps nothing; the plaintext never reaches a data file."""

from __future__ import annotations

import contextlib
import datetime
import pathlib
import signal
import subprocess
import sys

import psycopg2

from models import Transaction, database
from models.store.kek import FileKeks
from models.store.keystore import KeyStore
from models.store.rotation import rotate
from tests.support import (
    POSTGRES_URL,
    SUBJECT_KEY,
    add_account,
    add_records,
    files_containing,
    postgres_database,
    postgres_keystore,
    record,
    store_at,
)

URL = "/v1/redact/transaction"
RECORDS = "/v1/redact/records"
TEXT = "ERASE-ME-5d1e"
KEPT = "KEEP-ME-8a2c"
SENDER = "447700900123"


def _records():
    return (
        record("GONE", **{"from": SENDER}, text=TEXT, owner_name=f"{TEXT}-owner"),
        record("STAYS", text=KEPT),
    )


def read(client, account, transaction_id: str) -> dict:
    response = client.get(f"{RECORDS}/{transaction_id}", params={"product": "sms"}, headers=account)
    assert response.status_code == 200, response.text
    return response.json()


def _backup_sqlite(source: pathlib.Path, target: pathlib.Path) -> None:
    """`sqlite3`'s own online backup, as an operator takes one."""
    subprocess.run(["sqlite3", str(source), f".backup '{target}'"], check=True)


def _restored_postgres(tmp_path: pathlib.Path, source: str = POSTGRES_URL) -> str:
    """pg_dump of the database at `source` now, restored into a database of its own
    (`<source>_copy`); its URL."""
    dump = tmp_path / "store.dump"
    subprocess.run(["pg_dump", "-Fc", "-f", str(dump), source], check=True)
    base, original = source.rsplit("/", 1)
    name = f"{original}_copy"
    with contextlib.closing(psycopg2.connect(POSTGRES_URL)) as conn:
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            cursor.execute(f'CREATE DATABASE "{name}"')
    subprocess.run(["pg_restore", "--no-owner", "-d", f"{base}/{name}", str(dump)], check=True)
    return f"{base}/{name}"


def test_a_backup_restored_after_a_redaction_opens_nothing_of_it(make_app, database_url, tmp_path):
    app = make_app(database_url)
    account = add_account("acct0001")
    add_records(*_records())
    sqlite = database_url.startswith("sqlite")
    if sqlite:
        live = pathlib.Path(database_url.split(":///", 1)[1])
        backup = tmp_path / "backup" / "redact.db"
        backup.parent.mkdir()
        _backup_sqlite(live, backup)
        backup_url = f"sqlite:///{backup}"
    else:
        backup_url = _restored_postgres(tmp_path)

    with app.test_client() as client:
        assert read(client, account, "GONE")["text"] == TEXT
        answer = client.post(URL, json={"id": "GONE", "product": "sms"}, headers=account)
        assert answer.status_code == 204

    # The backup served beside the live key store (and the live KEKs): the redacted
    # record opens nowhere, the other still reads as stored.
    options = {"keep_tables": True}
    if sqlite:
        keystore = f"{live}.keystore"
        options |= {"keystore_url": f"sqlite:///{keystore}", "kek_file": f"{keystore}.kek"}
    restored = make_app(backup_url, **options)
    with database.connection_context():
        assert Transaction.get(Transaction.id == "GONE").redacted_at is None  # as backed up
    with restored.test_client() as client:
        gone = read(client, account, "GONE")
        assert (gone["from"], gone["text"], gone["owner_name"]) == ("REDACTED",) * 3
        assert gone["to"] == "REDACTED"
        assert read(client, account, "STAYS")["text"] == KEPT
    # No byte of any record's personal fields in the copy, nor in the live files.
    for marker in (TEXT.encode(), SENDER.encode(), KEPT.encode()):
        if sqlite:
            assert files_containing(backup, marker) == []
            assert files_containing(live, marker) == []
        else:
            assert marker not in (tmp_path / "store.dump").read_bytes()


def test_a_key_store_copy_older_than_the_rotation_bound_unwraps_nothing(
    make_app, database_url, tmp_path
):
    kek_path = str(tmp_path / "keks.json")  # a KEK file, which rotation rewrites
    own = {}
    if not database_url.startswith("sqlite"):  # a key store of its own: other KEKs
        own["keystore_url"] = postgres_database(f"{postgres_keystore()}_rotation")
    app = make_app(database_url, kek="", kek_file=kek_path, **own)
    account = add_account("acct0001")
    add_records(*_records())
    store = app.services.store
    if database_url.startswith("sqlite"):
        old_path = tmp_path / "old" / "keys.db"
        old_path.parent.mkdir()
        _backup_sqlite(pathlib.Path(store.keystore.db.database), old_path)
        old = f"sqlite:///{old_path}"
    else:
        old = _restored_postgres(tmp_path, own["keystore_url"])
    with database.connection_context():
        ids = [t.key_id for t in Transaction.select()]
    assert len(store.keystore.fetch(ids)) == 2

    now = datetime.datetime.now(datetime.UTC)
    rotation = rotate(store.keystore, now, datetime.timedelta(days=30))
    assert rotation.rewrapped == 2 and rotation.destroyed == []  # inside the bound: kept
    copy = KeyStore.open(old, FileKeks(kek_path))
    try:
        assert len(copy.fetch(ids)) == 2  # inside the bound, the copy still unwraps
    finally:
        copy.close()
    later = now + datetime.timedelta(days=31)
    rotation = rotate(store.keystore, later, datetime.timedelta(days=30))
    assert len(rotation.destroyed) == 1
    copy = KeyStore.open(old, FileKeks(kek_path))
    try:
        assert copy.fetch(ids) == {}  # wrapped under a KEK that no longer exists
    finally:
        copy.close()
    assert len(store.keystore.fetch(ids)) == 2  # the live store reads on
    with app.test_client() as client:
        assert read(client, account, "STAYS")["text"] == KEPT


def test_a_redaction_killed_after_destroying_the_key_leaves_nothing_readable(env, tmp_path):
    """kill -9 between the key store's commit and the data store's: the record opens
    nowhere; it was never acknowledged, and the retried redaction completes it."""
    database_url = env["DATABASE_URL"]
    with store_at(database_url, tables=True):
        add_account("acct0001")
        add_records(record("KILLED", text=TEXT))
    script = f"""
import os, signal, datetime
from models import open_store, database
from models.erasure import redaction
from models.store.keystore import KeyStore
destroying = KeyStore.destroying
def destroy_then_die(self, key_ids, now):
    destroying(self, key_ids, now).result()  # the key store's commit is done
    os.kill(os.getpid(), signal.SIGKILL)
KeyStore.destroying = destroy_then_die
open_store({database_url!r}, subject_key={SUBJECT_KEY.encode()!r})
with database.connection_context():
    redaction.redact_transaction(
        api_key="acct0001", products=["sms"], transaction_id="KILLED", product="sms",
        direction=None, now=datetime.datetime.now(datetime.UTC), min_age_seconds=0,
        trace_id="t",
    )
"""
    killed = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, check=False)
    assert killed.returncode == -signal.SIGKILL
    with store_at(database_url) as store:
        with database.connection_context():
            stored = Transaction.get(Transaction.id == "KILLED")
        assert stored.redacted_at is None  # the scrub never committed
        assert store.keystore.fetch([stored.key_id]) == {}  # but nothing of it opens
        assert TEXT.encode() not in pathlib.Path(database_url.split(":///", 1)[1]).read_bytes()
        from models.erasure.redaction import redact_transaction

        with database.connection_context():
            assert redact_transaction(
                api_key="acct0001",
                products=["sms"],
                transaction_id="KILLED",
                product="sms",
                direction=None,
                now=datetime.datetime.now(datetime.UTC),
                min_age_seconds=0,
                trace_id="retry",
            )
            assert Transaction.get(Transaction.id == "KILLED").body == "REDACTED"


def test_a_key_store_the_keks_given_cannot_unwrap_answers_503_and_stores_nothing(
    make_app, sqlite_url
):
    """Started with key-encryption keys other than the key store was written with (a
    misconfiguration): the records API answers 503, names the settings, stores nothing."""
    app = make_app(sqlite_url)
    account = add_account("acct0001")
    with app.test_client() as client:
        made = client.post("/v1/redact/suppressions", json={"number": SENDER}, headers=account)
        assert made.status_code == 201
    wrong = make_app(sqlite_url, keep_tables=True, kek="ab" * 32)
    with wrong.test_client() as client:
        refused = client.post(RECORDS, json={"records": [{**_api(record("NEW"))}]}, headers=account)
    assert refused.status_code == 503
    assert refused.json()["title"] == "Key Store Unusable"
    assert "REDACT_KEK" in refused.json()["detail"]
    with database.connection_context():
        assert Transaction.select().count() == 0


def _api(line: dict) -> dict:
    return {k: v for k, v in line.items() if k != "api_key"}
