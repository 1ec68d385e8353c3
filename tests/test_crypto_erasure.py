"""Erasure that reaches every copy: personal fields are sealed under per-record keys kept
in a key store apart from the data, and a redaction destroys the key before it is
acknowledged. A backup of the data store taken before a redaction, restored beside the
live key store after it, opens nothing of the redacted record; a copy of the key store
older than the rotation bound unwraps nothing; the plaintext never reaches a data file."""

from __future__ import annotations

import contextlib
import datetime
import os
import pathlib
import signal
import subprocess
import sys

import psycopg2
import pytest

from app.services import job_queue
from app.settings import Settings
from models import RedactionAudit, Transaction, database, utcnow
from models.erasure.redaction import (
    ANSWERED_EARLY_AT_MOST,
    redact_acknowledged,
    redaction_request,
)
from models.store.kek import FileKeks
from models.store.keystore import KeyStore
from models.store.rotation import rotate
from models.worker.queue import LEFT_PENDING_SECONDS
from tests.support import (
    POSTGRES_URL,
    SUBJECT_KEY,
    Service,
    add_account,
    add_records,
    basic,
    files_containing,
    postgres_database,
    postgres_keystore,
    record,
    scrubs_committed,
    store_at,
    wait_for,
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
        scrubs_committed()

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


def _killed_after_destroying_the_key(database_url: str, tmp_path: pathlib.Path) -> None:
    """A process that redacts KILLED as the Redact API does and is killed (-9) once
    the key store has committed the key's destruction, before the data store commits the
    scrub: the moment it could have answered 204."""
    with store_at(database_url, tables=True):
        add_account("acct0001")
        add_records(record("KILLED", text=TEXT))
    script = f"""
import asyncio, os, signal, datetime
from models import open_store
from models.erasure import redaction
from models.store.keystore import KeyStore
destroying = KeyStore.destroying
def destroy_then_die(self, *args):
    destroying(self, *args).result()  # the key store's commit is done
    os.kill(os.getpid(), signal.SIGKILL)
KeyStore.destroying = destroy_then_die
open_store({database_url!r}, subject_key={SUBJECT_KEY.encode()!r})
asyncio.run(redaction.redact_transaction_async(
    api_key="acct0001", products=["sms"], transaction_id="KILLED", product="sms",
    direction=None, now=datetime.datetime.now(datetime.UTC), min_age_seconds=0,
    trace_id="killed-trace",
))
"""
    killed = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, check=False)
    assert killed.returncode == -signal.SIGKILL


def test_a_redaction_killed_after_destroying_the_key_is_completed_at_the_next_start(env, tmp_path):
    """kill -9 between the key store's commit and the data store's: the record opens
    nowhere, the key store holds the redaction's intent, and the next start completes the
    scrub, its audit row and its log entry as the request asked."""
    database_url = env["DATABASE_URL"]
    _killed_after_destroying_the_key(database_url, tmp_path)
    with store_at(database_url) as store:
        with database.connection_context():
            stored = Transaction.get(Transaction.id == "KILLED")
        assert stored.redacted_at is None  # the scrub never committed
        assert store.keystore.fetch([stored.key_id]) == {}  # but nothing of it opens
        [intent] = store.keystore.pending().items()
        assert intent[0] == stored.key_id and "killed-trace" in intent[1]
        assert TEXT.encode() not in pathlib.Path(database_url.split(":///", 1)[1]).read_bytes()

    with store_at(database_url, tables=True):  # a start: `redact serve` and the CLI do this
        with database.connection_context():
            scrubbed = Transaction.get(Transaction.id == "KILLED")
            audits = list(RedactionAudit.select().where(RedactionAudit.transaction_id == "KILLED"))
        assert scrubbed.body == "REDACTED" and scrubbed.redacted_at is not None
        assert [(a.trace_id, a.source) for a in audits] == [("killed-trace", "api")]
        assert audits[0].log_index is not None  # in the erasure log, so it has a receipt
    with store_at(database_url) as store:
        assert store.keystore.pending() == {}  # settled, and deleted as the store closed


def test_a_read_completes_a_redaction_whose_scrub_a_crash_left_pending(env, tmp_path, make_app):
    """After the same crash, with no restart in between: reading the record, or asking
    for its receipt, completes the redaction first, so neither says it is not redacted."""
    database_url = env["DATABASE_URL"]
    _killed_after_destroying_the_key(database_url, tmp_path)
    app = make_app(database_url, keep_tables=True)  # tables as they are: no start-up pass
    headers = basic("acct0001")
    with app.test_client() as client:
        receipt = client.get(
            f"{RECORDS}/KILLED/receipt", params={"product": "sms"}, headers=headers
        )
        assert receipt.status_code == 200, receipt.text
        shown = read(client, headers, "KILLED")
    assert shown["text"] == "REDACTED"
    assert shown["redaction"]["source"] == "api" and shown["redaction"]["redacted_at"]
    assert app.services.store.keystore.pending() == {}


def _completed_as_asked(database_url: str) -> bool:
    """KILLED is scrubbed, with one audit row of the redaction the crash interrupted, and
    the key store holds no intent."""
    with store_at(database_url) as store:
        with database.connection_context():
            row = Transaction.get(Transaction.id == "KILLED")
            audits = list(RedactionAudit.select().where(RedactionAudit.transaction_id == "KILLED"))
        if row.redacted_at is None:
            return False
        assert row.body == "REDACTED"
        assert [(a.trace_id, a.source) for a in audits] == [("killed-trace", "api")]
        return store.keystore.pending() == {}


def test_the_queue_sweep_completes_a_redaction_left_by_a_process_that_is_gone(env, tmp_path):
    """After the same crash, with no restart and no read (another host's process died, say):
    the queue's periodic sweep leaves alone an intent a live writer may still be completing,
    and completes, then deletes, one acknowledged more than a minute ago."""
    database_url = env["DATABASE_URL"]
    _killed_after_destroying_the_key(database_url, tmp_path)
    settings = Settings.from_env({**env, "REDACT_QUEUE_URL": f"sqlite:///{tmp_path / 'q.db'}"})
    with store_at(database_url) as store:
        now = job_queue(settings)
        now.sweep()
        now.close()
        assert len(store.keystore.pending()) == 1  # just acknowledged: its writer's to do

        a_minute_on = datetime.timedelta(seconds=LEFT_PENDING_SECONDS + 1)
        later = job_queue(settings, clock=lambda: utcnow() + a_minute_on)
        later.sweep()
        later.close()
        assert store.keystore.pending() == {}  # completed and deleted at once
    assert _completed_as_asked(database_url)


@pytest.mark.slow
def test_serve_completes_what_a_worker_killed_after_its_204_left(env, tmp_path):
    """`redact serve --workers 2` runs while a process that acknowledged a redaction is
    killed before its scrub commits (a process of its own here: the moment a worker can
    die at). Once a worker dies and is replaced, the supervisor completes every redaction
    left pending: no restart, no read of the record, no wait for the sweep."""
    with Service(
        {**env, "REDACT_QUEUE_URL": f"sqlite:///{tmp_path / 'q.db'}"}, tmp_path, 2
    ) as service:
        _killed_after_destroying_the_key(env["DATABASE_URL"], tmp_path)
        assert not _completed_as_asked(env["DATABASE_URL"])
        os.kill(service.worker_pids()[0], signal.SIGKILL)
        wait_for(lambda: _completed_as_asked(env["DATABASE_URL"]), timeout=30)


def test_an_intent_is_kept_only_until_its_scrub_has_committed(make_app, sqlite_url):
    app = make_app(sqlite_url)
    headers = add_account("acct0001")
    add_records(record("I1"), record("I2"))
    keystore = app.services.store.keystore
    with app.test_client() as client:
        for transaction_id in ("I1", "I2"):
            body = {"id": transaction_id, "product": "sms"}
            answer = client.post(URL, json=body, headers=headers)
            assert answer.status_code == 204
            scrubs_committed()
        # I1's intent was deleted with I2's destroy; I2's waits for the next destroy, or
        # for the service to stop.
        [intent] = keystore.pending().values()
        assert '"I2"' in intent
    assert keystore.pending() == {}


def test_a_batch_under_load_keeps_no_intents_and_is_answered_after_its_commit(make_app, sqlite_url):
    """A batch larger than ANSWERED_EARLY_AT_MOST redacts as a job's does: its keys
    destroyed first, its callers told once the scrub has committed, no intent kept."""
    app = make_app(sqlite_url)
    add_account("acct0001")
    count = ANSWERED_EARLY_AT_MOST + 1
    add_records(*(record(f"B{n}") for n in range(count)))
    now = datetime.datetime.now(datetime.UTC)
    requests = [
        redaction_request(
            api_key="acct0001",
            products=["sms"],
            transaction_id=f"B{n}",
            product="sms",
            direction=None,
            now=now,
            min_age_seconds=0,
            trace_id="t" * 32,
        )
        for n in range(count)
    ]
    with database.connection_context(), database.atomic():
        assert redact_acknowledged(requests) == [True] * count
    assert app.services.store.keystore.pending() == {}
    with database.connection_context():
        assert Transaction.select().where(Transaction.redacted_at.is_null()).count() == 0


class _EndsTheSessionAfter:
    """The key store's destroy, after which the server ends the data store writer's
    session (`pid`) before it commits the scrub."""

    def __init__(self, destroying, pid: int):
        self.destroying = destroying
        self.pid = pid

    def result(self):
        self.destroying.result()
        with contextlib.closing(psycopg2.connect(POSTGRES_URL)) as other:
            other.autocommit = True
            other.cursor().execute("SELECT pg_terminate_backend(%s)", (self.pid,))


@pytest.mark.postgres
def test_a_scrub_whose_commit_fails_after_the_204_is_completed_by_the_writer(
    make_app, monkeypatch, caplog
):
    """The 204 comes once the key is destroyed; the server then ends the session before
    the scrub commits: the writer completes the scrub from the intent, in its next batch."""
    app = make_app(POSTGRES_URL)
    headers = add_account("acct0001")
    add_records(record("LOST", text=TEXT))
    destroying = KeyStore.destroying

    def destroy_then_end_the_session(self, *args):
        # On the data store's writer thread: its connection is the one to end.
        pid = database.connection().get_backend_pid()
        monkeypatch.setattr(KeyStore, "destroying", destroying)  # the first batch only
        return _EndsTheSessionAfter(destroying(self, *args), pid)

    monkeypatch.setattr(KeyStore, "destroying", destroy_then_end_the_session)
    with app.test_client() as client:
        answer = client.post(URL, json={"id": "LOST", "product": "sms"}, headers=headers)
        assert answer.status_code == 204
        shown = read(client, headers, "LOST")  # waits for the writer's next batch if need be
    assert shown["text"] == "REDACTED" and shown["redaction"]["source"] == "api"
    with database.connection_context():
        audits = list(RedactionAudit.select().where(RedactionAudit.transaction_id == "LOST"))
    assert [(len(a.trace_id), a.source) for a in audits] == [(32, "api")]  # the request's
    assert "1 acknowledged redactions did not commit" in caplog.text  # the commit did fail
    app.services.store.group_commit.close()  # what it had queued is done
    assert app.services.store.keystore.pending() == {}


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
