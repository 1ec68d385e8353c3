"""`redact receipts backfill`: records an earlier version redacted, before the erasure log
existed, get log entries that say they were written after the fact, and then receipts
that verify offline; a second run appends nothing; bad input is one line. On SQLite and
PostgreSQL, through the real command and the API."""

from __future__ import annotations

import json
import sqlite3

import pytest
from peewee import fn

from models import MODELS, Account, database
from models.proof.entries import LogChunk
from tests.support import (
    FIRST_RELEASE,
    SIGNING_KEY,
    SUBJECT_KEY,
    basic,
    cli,
    one_line_error,
    password_hash,
    postgres_env,
    store_at,
)

# As the first release redacted: the fields overwritten, `redacted_at` set and an audit
# row (the log came later). OLD2 was redacted with no audit row at all.
REDACTED_BY_AN_EARLIER_VERSION = """
UPDATE "transaction" SET sender = 'REDACTED', recipient = 'REDACTED', body = 'REDACTED',
  redacted_at = '2026-01-02 00:00:00' WHERE id = 'OLD1';
INSERT INTO "redaction_audit" (at, api_key, transaction_id, product, trace_id, source)
  VALUES ('2026-01-02 00:00:00', 'acct0001', 'OLD1', 'sms', 'trace-old-1', 'api');
UPDATE "transaction" SET sender = 'REDACTED', recipient = 'REDACTED',
  redacted_at = '2026-01-03 00:00:00' WHERE id = 'OLD2';
"""

RECEIPT = "/v1/redact/records/OLD1/receipt?product=sms&type=outbound"

# And more of them than one batch of the backfill (models/erasure/backfill.py) logs.
MORE = 1100
REDACTED_MANY = 'INSERT INTO "transaction" VALUES ' + ", ".join(
    f"('OLD-{n:04d}', 'acct0001', 'voice', NULL, '2026-01-01 00:00:00', 'REDACTED', NULL,"
    " NULL, NULL, '2026-01-04 00:00:00')"
    for n in range(MORE)
)


@pytest.fixture
def old_store(database_url, tmp_path):
    """The environment of a `redact` command on a store the first release made and
    redacted two records in, upgraded by `redact migrate`."""
    script = FIRST_RELEASE + REDACTED_BY_AN_EARLIER_VERSION + REDACTED_MANY + ";"
    if database_url.startswith("sqlite"):
        connection = sqlite3.connect(database_url.removeprefix("sqlite:///"))
        connection.executescript(script)
        connection.close()
        env = {"DATABASE_URL": database_url, "REDACT_SUBJECT_KEY": SUBJECT_KEY}
    else:
        script = script.replace("DATETIME", "TIMESTAMP").replace(
            '"id" INTEGER NOT NULL PRIMARY KEY', '"id" SERIAL PRIMARY KEY'
        )
        with store_at(database_url), database.connection_context():
            database.drop_tables(MODELS, safe=True, cascade=True)
            database.execute_sql(script)
        env = postgres_env(REDACT_SIGNING_KEY=SIGNING_KEY)
    cli({**env, "REDACT_PROGRESS_SECONDS": "0"}, "migrate", check=True)
    with store_at(database_url), database.connection_context():
        Account.update(secret_hash=password_hash()).execute()  # to ask for receipts
    return env


def test_backfilled_records_get_receipts_that_say_so_and_verify(
    old_store, make_app, database_url, tmp_path
):
    app = make_app(database_url, keep_tables=True)
    headers = basic("acct0001")
    with app.test_client() as client:
        refused = client.get(RECEIPT, headers=headers)
        assert refused.status_code == 409
        assert "redact receipts backfill" in refused.json()["detail"]

        first = cli({**old_store, "REDACT_PROGRESS_SECONDS": "0"}, "receipts", "backfill")
        assert first.returncode == 0, first.stderr
        logged = 2 + MORE
        assert json.loads(first.stdout) == {"backfilled": logged, "accounts": {"acct0001": logged}}
        assert f"logged {logged:,} of {logged:,} records" in first.stderr
        again = cli(old_store, "receipts", "backfill", "--account", "acct0001", check=True)
        assert json.loads(again.stdout) == {"backfilled": 0, "accounts": {}}

        answer = client.get(RECEIPT, headers=headers)
        assert answer.status_code == 200, answer.text
        document = answer.json()["document"]
        entry = json.loads(document["log"]["entry"])
        assert document["backfilled"] is True and entry["backfilled"] is True
        # `at` is when the entry was written, not the redaction's time (2026-01-02).
        assert document["redacted_at"] == entry["at"] and not entry["at"].startswith("2026-01-02")
        assert (entry["source"], entry["trace_id"]) == ("api", "trace-old-1")
        assert entry["fields"] == ["from", "to", "text"]
        voice = client.get("/v1/redact/records/OLD2/receipt?product=voice", headers=headers)
        assert voice.status_code == 200, voice.text
        assert json.loads(voice.json()["document"]["log"]["entry"])["source"] == "unknown"

        (tmp_path / "receipt.json").write_text(answer.text)
        (tmp_path / "keys.json").write_text(client.get("/v1/redact/keys").text)
    verified = cli(
        old_store,
        "receipts",
        "verify",
        str(tmp_path / "receipt.json"),
        "--keys",
        str(tmp_path / "keys.json"),
        check=True,
    )
    assert verified.stdout.startswith("valid: record OLD1 of acct0001, log entry ")
    assert cli(old_store, "audit", "verify", check=True).stdout.endswith(": ok\n")

    # The flag is part of the entry's hash: taking it off is an altered entry.
    with store_at(database_url), database.connection_context():
        stripped = LogChunk.update(body=fn.REPLACE(LogChunk.body, '"backfilled":true,', ""))
        assert stripped.execute() > 0
    altered = cli(old_store, "audit", "verify")
    assert altered.returncode == 1 and "was altered" in altered.stderr


def test_bad_input_is_one_line(old_store):
    one_line_error(cli(old_store, "receipts", "backfill", "--account", "nobody"), "no account")
    one_line_error(
        cli({**old_store, "DATABASE_URL": "sqlite:///nowhere/redact.db"}, "receipts", "backfill"),
        "no store at",
    )
    usage = cli(old_store, "receipts", "backfill", "--acount", "acct0001")
    assert usage.returncode != 0 and usage.stderr.count("\n") == 1, usage.stderr
    done = json.loads(cli(old_store, "receipts", "backfill", check=True).stdout)
    assert done["backfilled"] == 2 + MORE
