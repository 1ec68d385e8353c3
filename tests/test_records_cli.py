"""`redact policies`, `redact holds` and `redact retention run`: the same rules as the
records API, one-line errors, and a retention run killed midway that loses nothing."""

from __future__ import annotations

import datetime
import json
import os
import signal
import sqlite3
import time

import pytest

from models import AuditEvent, RedactionAudit, Transaction
from tests.support import cli, one_line_error, opened, record, redact, start, store_at, wait_for

NUMBER = "447700900002"


@pytest.fixture
def loaded(env):
    """acct0001 with two old SMS records, one of them about NUMBER."""
    cli(env, "accounts", "create", "--api-key", "acct0001", check=True)
    now = datetime.datetime.now(datetime.UTC)
    lines = [
        record("OLD1", now=now, age=datetime.timedelta(days=40)),
        record("OLD2", now=now, age=datetime.timedelta(days=40), to="447700900777"),
    ]
    cli(env, "transactions", "load", "-", stdin="\n".join(map(json.dumps, lines)), check=True)
    return env


def test_policies_show_and_set_with_an_audit(loaded):
    shown = json.loads(cli(loaded, "policies", "show", "--account", "acct0001", check=True).stdout)
    assert shown["products"]["sms"] == {
        "auto_redact": "off",
        "after_days": None,
        "backlog": 0,
        "held": 0,
    }
    result = cli(
        loaded,
        "policies", "set", "--account", "acct0001", "--product", "sms",
        "--auto-redact", "after", "--after-days", "30",
        check=True,
    )  # fmt: skip
    assert json.loads(result.stdout)["products"]["sms"] == {
        "auto_redact": "after",
        "after_days": 30,
        "backlog": 2,
        "held": 0,
    }
    with store_at(loaded["DATABASE_URL"]):
        event = AuditEvent.get()
        assert (event.action, event.target, event.after["after_days"]) == (
            "policy.changed",
            "sms",
            30,
        )
        assert event.actor.startswith("cli")


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--account", "nobody", "--product", "sms", "--auto-redact", "off"], "no account"),
        (["--account", "acct0001", "--product", "sms", "--auto-redact", "after"], "after_days"),
        (
            [
                "--account",
                "acct0001",
                "--product",
                "sms",
                "--auto-redact",
                "off",
                "--after-days",
                "3",
            ],
            "after_days",
        ),
        (["--account", "acct0001", "--product", "fax", "--auto-redact", "off"], "fax"),
    ],
)
def test_a_bad_policy_is_one_line_and_changes_nothing(loaded, args, fragment):
    one_line_error(cli(loaded, "policies", "set", *args), fragment)
    with store_at(loaded["DATABASE_URL"]):
        assert AuditEvent.select().count() == 0


def test_holds_create_list_show_release(loaded):
    created = json.loads(
        cli(
            loaded,
            "holds", "create", "--account", "acct0001", "--reason", "case 12",
            "--subject", NUMBER, "--transaction", "OLD2:sms:outbound",
            check=True,
        ).stdout
    )  # fmt: skip
    assert created["counts"] == {"transactions": 1, "subjects": 1, "records": 2}
    listed = json.loads(cli(loaded, "holds", "list", "--account", "acct0001", check=True).stdout)
    assert [h["id"] for h in listed["data"]] == [created["id"]]
    shown = json.loads(cli(loaded, "holds", "show", created["id"], check=True).stdout)
    assert shown == created
    # Held, the Redact API's rule refuses it, as retention would.
    released = json.loads(cli(loaded, "holds", "release", created["id"], check=True).stdout)
    assert released["status"] == "released"
    with store_at(loaded["DATABASE_URL"]):
        actions = [e.action for e in AuditEvent.select().order_by(AuditEvent.id)]
        assert actions == ["hold.created", "hold.released"]


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--account", "acct0001", "--reason", "x"], "at least one"),
        (["--account", "acct0001", "--reason", "x", "--subject", "hello"], "not a phone number"),
        (["--account", "acct0001", "--reason", "x", "--transaction", "NOPE"], "could not be found"),
        (["--account", "acct0001", "--reason", "x", "--transaction", "OLD1:fax"], "product"),
        (["--account", "nobody", "--reason", "x", "--subject", NUMBER], "no account"),
    ],
)
def test_a_bad_hold_is_one_line_and_creates_nothing(loaded, args, fragment):
    one_line_error(cli(loaded, "holds", "create", *args), fragment)
    with store_at(loaded["DATABASE_URL"]):
        assert AuditEvent.select().count() == 0


def test_an_unknown_hold_is_one_line(loaded):
    for action in ("show", "release"):
        one_line_error(cli(loaded, "holds", action, "hold_nope"), "no hold with id 'hold_nope'")


def test_retention_run_redacts_what_is_due_and_skips_what_is_held(loaded):
    cli(
        loaded, "policies", "set", "--account", "acct0001", "--product", "sms",
        "--auto-redact", "after", "--after-days", "30", check=True,
    )  # fmt: skip
    cli(loaded, "holds", "create", "--account", "acct0001", "--reason", "r",
        "--transaction", "OLD2", check=True)  # fmt: skip
    result = cli(loaded, "retention", "run", check=True)
    assert json.loads(result.stdout) == {"redacted": 1, "held": 1}
    with store_at(loaded["DATABASE_URL"]):
        bodies = {t.id: opened(t).body for t in Transaction.select()}
    assert bodies == {"OLD1": "REDACTED", "OLD2": "hello there"}


@pytest.mark.slow
def test_a_killed_retention_run_loses_nothing_and_the_next_goes_on(env, tmp_path):
    """`redact retention run` killed (SIGKILL) midway: every batch it committed is whole
    (scrubbed and audited once), none is half done, and a second run redacts the rest."""
    total = 30_000
    env = {**env, "REDACT_JOB_BATCH_SIZE": "200", "REDACT_JOB_LEASE_SECONDS": "1"}
    redact(env, "accounts", "create", "--api-key", "acct0001", check=True)
    now = datetime.datetime.now(datetime.UTC)
    lines = "\n".join(
        json.dumps(record(f"K{n:06d}", now=now, age=datetime.timedelta(days=40)))
        for n in range(total)
    )
    redact(env, "transactions", "load", "-", stdin=lines, check=True)
    redact(env, "policies", "set", "--account", "acct0001", "--product", "sms",
           "--auto-redact", "after", "--after-days", "30", check=True)  # fmt: skip
    db_path = env["DATABASE_URL"].removeprefix("sqlite:///")

    def redacted() -> int:
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30) as connection:
            query = 'SELECT count(*) FROM "transaction" WHERE redacted_at IS NOT NULL'
            return connection.execute(query).fetchone()[0]

    process = start(env, tmp_path, "retention", "run")
    wait_for(lambda: redacted() >= 2000, timeout=120, what="a few committed batches")
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    partial = redacted()
    assert 2000 <= partial < total, "killed midway"

    with store_at(env["DATABASE_URL"]):
        audited = RedactionAudit.select().where(RedactionAudit.source == "retention")
        assert audited.count() == partial
        half_done = Transaction.select().where(
            (Transaction.redacted_at.is_null() & (Transaction.body == "REDACTED"))
            | (Transaction.redacted_at.is_null(False) & (Transaction.body != "REDACTED"))
        )
        assert half_done.count() == 0

    time.sleep(1.5)  # the killed run's lease expires
    result = redact(env, "retention", "run", check=True)
    assert json.loads(result.stdout) == {"redacted": total - partial, "held": 0}
    with store_at(env["DATABASE_URL"]):
        assert Transaction.select().where(Transaction.redacted_at.is_null()).count() == 0
        audited = RedactionAudit.select().where(RedactionAudit.source == "retention")
        assert audited.count() == total
        assert len({a.transaction_id for a in audited}) == total
