"""`redact audit verify` (tamper detection: a row of the log edited, deleted or inserted in
the database file), `redact receipts verify` (offline, with keys from a file or a URL)
and `redact keys`."""

from __future__ import annotations

import datetime
import http.server
import json
import sqlite3
import threading

import pytest

from models import current_store, database, redact_transaction, utcnow
from models.erasure.policies import set_policies
from models.proof.heads import signed_head
from models.proof.merkle import leaf_hash
from models.proof.receipts import record_receipt
from models.proof.signing import listed_keys
from models.store.keys import SigningKey, canonical
from tests.support import add_account, add_records, cli, one_line_error, record, store_at


def db_path(env) -> str:
    return env["DATABASE_URL"].split(":///", 1)[1]


@pytest.fixture
def logged(env):
    """acct0001 with a log of 8 policy changes, tree heads signed at sizes 3 and 8; and
    acct0002 with one entry."""
    with store_at(env["DATABASE_URL"], tables=True), database.connection_context():
        for api_key in ("acct0001", "acct0002"):
            add_account(api_key)
        key = current_store().signer()
        now = utcnow()
        for n in range(8):
            mode = {"auto_redact": "after", "after_days": 30 + n}
            set_policies("acct0001", {"sms": mode}, now=now, actor="cli:test")
            if n == 2:
                signed_head("acct0001", key, now)
        signed_head("acct0001", key, now)
        set_policies("acct0002", {"sms": {"auto_redact": "immediate"}}, now=now, actor="cli:t")
    return env


def sql(env, statement: str, *args) -> None:
    with sqlite3.connect(db_path(env)) as connection:
        connection.execute(statement, args)


def body_of(env, position: int) -> str:
    with sqlite3.connect(db_path(env)) as connection:
        (body,) = connection.execute(
            "SELECT body FROM log_chunk WHERE api_key = 'acct0001' AND position = ?", (position,)
        ).fetchone()
    return body


def tampered(result, fragment: str) -> None:
    """`audit verify` exited 1 with one line on stderr naming the fault (the accounts
    that hold are reported on stdout)."""
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], lines


def test_an_untouched_log_verifies(logged):
    result = cli(logged, "audit", "verify", check=True)
    assert result.stdout.splitlines() == [
        "acct0001: 8 entries, 2 tree heads: ok",
        "acct0002: 1 entries, 0 tree heads: ok",
    ]


def test_an_edited_entry_is_named(logged):
    edited = body_of(logged, 4).replace('"after_days":34', '"after_days":3')
    sql(logged, "UPDATE log_chunk SET body = ? WHERE position = 4 AND api_key = 'acct0001'", edited)
    tampered(cli(logged, "audit", "verify"), "acct0001: entry 4 was altered")


def test_an_edit_with_its_leaf_rewritten_breaks_the_tree_head(logged):
    edited = body_of(logged, 4).replace('"after_days":34', '"after_days":3')
    sql(
        logged,
        "UPDATE log_chunk SET body = ?, leaves = ? WHERE position = 4 AND api_key = 'acct0001'",
        edited,
        leaf_hash(edited.encode()),
    )
    result = cli(logged, "audit", "verify")
    tampered(result, "the tree head of size 8")
    assert "entries 3..7" in result.stderr


def test_a_deleted_entry_is_named(logged):
    sql(logged, "DELETE FROM log_chunk WHERE position = 5 AND api_key = 'acct0001'")
    tampered(cli(logged, "audit", "verify"), "acct0001: entry 5 was removed")


def test_the_last_entry_deleted_is_named(logged):
    sql(logged, "DELETE FROM log_chunk WHERE position = 7 AND api_key = 'acct0001'")
    tampered(cli(logged, "audit", "verify"), "acct0001: entry 7 was removed")


def test_an_entry_inserted_in_the_middle_is_named(logged):
    # The entries from 2 on move one place up; a forged entry 2 takes the gap.
    for position in range(7, 1, -1):
        sql(
            logged,
            "UPDATE log_chunk SET position = ? WHERE position = ? AND api_key = 'acct0001'",
            position + 1,
            position,
        )
    forged = canonical({"account": "acct0001", "index": 2, "kind": "policy.changed"})
    sql(
        logged,
        "INSERT INTO log_chunk (api_key, position, count, kind, body, leaves)"
        " VALUES (?, 2, 1, ?, ?, ?)",
        "acct0001",
        "policy.changed",
        forged,
        leaf_hash(forged.encode()),
    )
    sql(logged, "UPDATE log_state SET size = 9 WHERE api_key = 'acct0001'")
    tampered(cli(logged, "audit", "verify"), "acct0001: entry 2 was inserted")


def test_an_entry_appended_behind_the_logs_back_is_named(logged):
    forged = canonical({"account": "acct0002", "index": 1, "kind": "redaction"})
    sql(
        logged,
        "INSERT INTO log_chunk (api_key, position, count, kind, body, leaves)"
        " VALUES (?, 1, 1, ?, ?, ?)",
        "acct0002",
        "redaction",
        forged,
        leaf_hash(forged.encode()),
    )
    result = cli(logged, "audit", "verify")
    tampered(result, "acct0002: entry 1 was inserted")
    assert "acct0001: 8 entries, 2 tree heads: ok" in result.stdout


@pytest.fixture
def receipt_file(env, tmp_path):
    """A receipt of an API redaction of T1, and the store's public keys, in files."""
    with store_at(env["DATABASE_URL"], tables=True), database.connection_context():
        add_account("acct0001")
        now = datetime.datetime.now(datetime.UTC)
        add_records(record("T1", now=now))
        assert redact_transaction(
            api_key="acct0001",
            products=["sms"],
            transaction_id="T1",
            product="sms",
            direction=None,
            now=now,
            min_age_seconds=3600,
            trace_id="trace-1",
        )
        token = record_receipt("acct0001", "T1", "sms", None, current_store().signer(), now).token
        keys = listed_keys(current_store().signing_key)
    (tmp_path / "receipt.jws").write_text(token)
    (tmp_path / "receipt.json").write_text(json.dumps({"receipt": token}))
    (tmp_path / "keys.json").write_text(json.dumps({"keys": keys}))
    return tmp_path


def test_a_receipt_verifies_with_keys_from_a_file_or_the_store(env, receipt_file):
    keys = str(receipt_file / "keys.json")
    for name in ("receipt.jws", "receipt.json"):
        result = cli({}, "receipts", "verify", str(receipt_file / name), "--keys", keys)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("valid: record T1 of acct0001, log entry 0 of 1")
    assert "erasure complete" in cli(env, "receipts", "verify", str(receipt_file / name)).stdout


def test_a_receipt_verifies_with_keys_from_a_url(receipt_file):
    body = (receipt_file / "keys.json").read_bytes()

    class Keys(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Keys)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/v1/redact/keys"
        result = cli({}, "receipts", "verify", str(receipt_file / "receipt.jws"), "--keys", url)
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 0, result.stderr


def test_a_forged_or_foreign_receipt_is_one_line_and_exit_1(receipt_file):
    keys = str(receipt_file / "keys.json")
    token = (receipt_file / "receipt.jws").read_text()
    header, payload, signature = token.split(".")
    forged = receipt_file / "forged.jws"
    forged.write_text(f"{header}.{payload[:-4]}AAAA.{signature}")
    one_line_error(cli({}, "receipts", "verify", str(forged), "--keys", keys), "does not verify", 1)
    other = receipt_file / "other-keys.json"
    other.write_text(json.dumps({"keys": [SigningKey.generate().public_jwk()]}))
    one_line_error(
        cli({}, "receipts", "verify", str(receipt_file / "receipt.jws"), "--keys", str(other)),
        "does not verify",
        1,
    )
    one_line_error(
        cli({}, "receipts", "verify", str(receipt_file / "missing"), "--keys", keys),
        "cannot read",
        1,
    )
    one_line_error(
        cli({}, "receipts", "verify", str(receipt_file / "receipt.jws"), "--keys", token),
        "cannot read the keys",
        1,
    )


def test_keys_generate_and_list(env):
    cli(env, "migrate", check=True)
    generated = cli(env, "keys", "generate", check=True).stdout
    assert SigningKey.parse(generated).kid
    listed = json.loads(cli(env, "keys", "list", check=True).stdout)["keys"]
    assert len(listed) == 1 and "d" not in listed[0] and listed[0]["alg"] == "Ed25519"
    assert listed == json.loads(cli(env, "keys", "list", check=True).stdout)["keys"]
    bad = {**env, "REDACT_SIGNING_KEY": "not a key"}
    one_line_error(cli(bad, "keys", "list"), "REDACT_SIGNING_KEY", 2)


def test_a_deleted_tree_head_is_named(logged):
    sql(logged, "DELETE FROM tree_head WHERE api_key = 'acct0001' AND tree_size = 8")
    tampered(cli(logged, "audit", "verify"), "acct0001: the tree head of size 8 was removed")


def test_a_kept_subtree_that_does_not_match_its_entries_is_named(env):
    with store_at(env["DATABASE_URL"], tables=True), database.connection_context():
        add_account("acct0001")
        now = utcnow()
        for n in range(300):
            mode = {"auto_redact": "after", "after_days": 30 + n}
            set_policies("acct0001", {"sms": mode}, now=now, actor="cli:test")
        signed_head("acct0001", current_store().signer(), now)
    cli(env, "audit", "verify", check=True)
    sql(env, "UPDATE log_node SET hash = zeroblob(32) WHERE api_key = 'acct0001'")
    tampered(cli(env, "audit", "verify"), "the kept subtree of entries 0..255 does not match")


def test_heads_are_checked_with_the_keys_the_auditor_brings(logged, tmp_path):
    theirs = tmp_path / "keys.json"
    with store_at(logged["DATABASE_URL"]), database.connection_context():
        theirs.write_text(json.dumps({"keys": listed_keys(current_store().signing_key)}))
    assert cli(logged, "audit", "verify", "--keys", str(theirs)).returncode == 0
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"keys": [SigningKey.generate().public_jwk()]}))
    tampered(
        cli(logged, "audit", "verify", "--keys", str(other)),
        "acct0001: the tree head of size 3: the signature does not verify",
    )


def test_heads_kept_outside_catch_a_rewrite_that_removed_the_stored_ones(logged, tmp_path):
    """Whoever can write to the database can rewrite an entry and its leaf, drop the tree
    heads and the tree built over them: the database then agrees with itself. Heads an
    auditor kept do not."""
    with sqlite3.connect(db_path(logged)) as connection:
        kept = [row[0] for row in connection.execute("SELECT token FROM tree_head")]
    (tmp_path / "heads.txt").write_text("\n".join(kept) + "\n")
    edited = body_of(logged, 4).replace('"after_days":34', '"after_days":3')
    sql(
        logged,
        "UPDATE log_chunk SET body = ?, leaves = ? WHERE position = 4 AND api_key = 'acct0001'",
        edited,
        leaf_hash(edited.encode()),
    )
    sql(logged, "DELETE FROM tree_head")
    sql(logged, "DELETE FROM log_node")
    sql(logged, "UPDATE log_state SET integrated = 0, frontier = x'', signed_size = -1")
    assert cli(logged, "audit", "verify").returncode == 0  # consistent with itself
    heads = ["--heads", str(tmp_path / "heads.txt")]
    tampered(cli(logged, "audit", "verify", *heads), "acct0001: the tree head of size 8")
    (tmp_path / "forged.txt").write_text(kept[0][:-4] + "AAAA\n")
    one_line_error(
        cli(logged, "audit", "verify", "--heads", str(tmp_path / "forged.txt")), "line 1", 1
    )
