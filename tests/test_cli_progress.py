"""The long commands show their progress on stderr, so that stdout stays their result: plain
lines every REDACT_PROGRESS_SECONDS when stderr is not a terminal (a line at each step
the work reports with 0), a bar with the rate on a terminal. Run as processes, whose
stderr is a pipe or a pseudo-terminal."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys

import pytest

from app.cli.progress import Progress
from app.services import job_queue
from app.settings import Settings
from tests.support import cli, postgres_env, redact, redact_command, store_at

ACCOUNT, SECRET, NUMBER = "acct0001", "secret-123", "447700900001"
RECORDS = 3000


def records_file(tmp_path, count: int = RECORDS):
    """`count` SMS records of 2020 about NUMBER, as JSON Lines."""
    path = tmp_path / "records.jsonl"
    with path.open("w") as out:
        for n in range(count):
            record = {
                "id": f"0A{n:015X}",
                "api_key": ACCOUNT,
                "product": "sms",
                "type": "outbound",
                "created_at": "2020-01-01T00:00:00Z",
                "from": "Vonage",
                "to": NUMBER,
                "text": "hello",
            }
            out.write(json.dumps(record) + "\n")
    return path


def loaded(env, tmp_path):
    """The account and RECORDS records in the command's store."""
    cli(env, "accounts", "create", "--api-key", ACCOUNT, "--api-secret", SECRET, check=True)
    cli(env, "transactions", "load", str(records_file(tmp_path)), check=True)
    return env


def lines(stderr: str, pattern: str) -> list[str]:
    return [line for line in stderr.splitlines() if re.fullmatch(pattern, line)]


def test_loading_prints_a_line_at_each_batch_off_a_terminal(env, tmp_path):
    cli(env, "accounts", "create", "--api-key", ACCOUNT, "--api-secret", SECRET, check=True)
    done = redact(
        {**env, "REDACT_PROGRESS_SECONDS": "0"},
        "transactions",
        "load",
        str(records_file(tmp_path)),
        check=True,
    )
    assert done.stdout == f"loaded {RECORDS} transactions\n"
    shown = lines(done.stderr, r"loaded ([\d,]+) of 3,000 records \([\d,]+/s\)")
    assert [line.split()[1] for line in shown] == ["1,000", "2,000", "3,000"]


def test_loading_is_quiet_when_it_ends_before_the_first_line(env, tmp_path):
    cli(env, "accounts", "create", "--api-key", ACCOUNT, "--api-secret", SECRET, check=True)
    done = redact(env, "transactions", "load", str(records_file(tmp_path, 10)), check=True)
    assert (done.stdout, done.stderr) == ("loaded 10 transactions\n", "")


@pytest.mark.slow
def test_loading_prints_lines_every_interval(env, tmp_path):
    """With a whole number of seconds: a line a second while it works, and the last one."""
    cli(env, "accounts", "create", "--api-key", ACCOUNT, "--api-secret", SECRET, check=True)
    source = records_file(tmp_path, 20000)
    done = redact({**env, "REDACT_PROGRESS_SECONDS": "1"}, "transactions", "load", str(source))
    assert done.returncode == 0, done.stderr
    shown = lines(done.stderr, r"loaded [\d,]+ of 20,000 records \([\d,]+/s\)")
    assert shown and shown == done.stderr.splitlines()
    assert shown[-1].startswith("loaded 20,000 of 20,000 records")


def test_retention_keys_and_jobs_show_progress_and_keep_stdout_json(env, tmp_path):
    loaded(env, tmp_path)
    every = {**env, "REDACT_PROGRESS_SECONDS": "0", "REDACT_JOB_BATCH_SIZE": "500"}

    rotated = redact(every, "keys", "rotate", check=True)
    assert json.loads(rotated.stdout)["rewrapped"] == RECORDS
    assert lines(rotated.stderr, r"re-wrapped [\d,]+ of [\d,]+ keys \([\d,]+/s\)")

    created = json.loads(
        cli(env, "jobs", "create", "--account", ACCOUNT, "--subject", NUMBER, check=True).stdout
    )
    with store_at(env["DATABASE_URL"]):
        job_queue(Settings.from_env(env)).drain()  # a worker validates it
    ran = redact(every, "jobs", "run", created["id"], "--wait", check=True)
    assert json.loads(ran.stdout)["status"] == "succeeded"
    shown = lines(ran.stderr, r"redacted [\d,]+( of 3,000)? records \([\d,]+/s\)")
    assert shown and shown == ran.stderr.splitlines()
    assert shown[-1].startswith("redacted 3,000 ")


def test_retention_shows_each_batch(env, tmp_path):
    loaded(env, tmp_path)
    cli(env, "policies", "set", "--account", ACCOUNT, "--product", "sms", "--auto-redact",
        "after", "--after-days", "1", check=True)  # fmt: skip
    every = {**env, "REDACT_PROGRESS_SECONDS": "0", "REDACT_JOB_BATCH_SIZE": "1000"}
    retention = redact(every, "retention", "run", check=True)
    assert json.loads(retention.stdout) == {"redacted": RECORDS, "held": 0}
    shown = lines(retention.stderr, r"redacted ([\d,]+) records \([\d,]+/s\)")
    assert [line.split()[1] for line in shown] == ["1,000", "2,000", "3,000"]


def test_a_terminal_gets_a_bar_with_the_rate(env, tmp_path):
    cli(env, "accounts", "create", "--api-key", ACCOUNT, "--api-secret", SECRET, check=True)
    source = records_file(tmp_path)
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        redact_command("transactions", "load", str(source)),
        env={**os.environ, **env, "TERM": "xterm-256color", "COLUMNS": "120"},
        stdout=subprocess.PIPE,
        stderr=terminal,
        stdin=subprocess.DEVNULL,
    )
    os.close(terminal)
    shown = b""
    while True:
        ready, _, _ = select.select([controller], [], [], 60)
        assert ready, "the command fell silent"
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the terminal closed: the command ended
            break
        if not chunk:
            break
        shown += chunk
    os.close(controller)
    stdout, _ = process.communicate(timeout=60)
    assert process.returncode == 0, shown
    assert stdout == b"loaded 3000 transactions\n"
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown.decode())
    assert "loaded records" in text and "3000/3000" in text and "records/s" in text
    assert "━" in text  # the bar


def test_the_bar_leaves_stdout_alone(monkeypatch):
    """On a terminal, what the command prints while the bar shows stays on stdout (rich
    would print it through the bar's console, on stderr)."""
    controller, terminal = pty.openpty()
    stream = os.fdopen(terminal, "w")
    stdout = sys.stdout
    try:
        with Progress("loaded", "records", seconds=5, total=2, stream=stream) as shown:
            assert shown.terminal
            shown.update(1)
            assert sys.stdout is stdout
    finally:
        stream.close()
        os.close(controller)


@pytest.mark.postgres
def test_maintenance_shows_each_table_it_vacuumed(env):
    """PostgreSQL's maintenance (SQLite needs none): a line per table off a terminal."""
    env = {**env, **postgres_env(REDACT_PROGRESS_SECONDS="0")}
    done = redact(env, "maintenance", check=True)
    assert done.stdout.strip() == "vacuumed transaction, redaction_job_object, redaction_job"
    shown = lines(done.stderr, r"vacuumed (\d) of 3 tables \([\d,]+/s\)")
    assert [line.split()[1] for line in shown] == ["1", "2", "3"], done.stderr
