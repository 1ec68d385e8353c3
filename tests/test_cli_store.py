"""The `redact` commands do not guess: a command that reads or changes a store refuses one
that is not there (and makes no file), an unknown account is one error from every
command, and the help names the environment that says where things are."""

from __future__ import annotations

import json
import os
import re

import click
import pytest

from app.cli import main
from tests.support import ROOT, cli, one_line_error

NUMBER = "14155550100"

# Every command that reads or changes what a store holds, with arguments it accepts.
READERS = [
    ["jobs", "list", "--account", "acct0001"],
    ["jobs", "show", "job_x"],
    ["jobs", "create", "--account", "acct0001", "--subject", NUMBER],
    ["jobs", "run", "job_x", "--wait"],
    ["jobs", "cancel", "job_x"],
    ["policies", "show", "--account", "acct0001"],
    ["policies", "set", "--account", "acct0001", "--product", "sms", "--auto-redact", "off"],
    ["holds", "create", "--account", "acct0001", "--reason", "case 1", "--subject", NUMBER],
    ["holds", "list", "--account", "acct0001"],
    ["holds", "show", "hold_x"],
    ["holds", "release", "hold_x"],
    ["retention", "run"],
    ["webhooks", "create", "--account", "acct0001", "--url", "https://example.com/h"],
    ["webhooks", "list", "--account", "acct0001"],
    ["webhooks", "show", "whk_x"],
    ["webhooks", "delete", "whk_x"],
    ["suppressions", "add", "--account", "acct0001", NUMBER],
    ["suppressions", "list", "--account", "acct0001"],
    ["suppressions", "lift", "--account", "acct0001", "sup_x"],
    ["accounts", "rotate-secret", "--api-key", "acct0001"],
    ["audit", "verify"],
    ["keys", "list"],
    ["keys", "rotate"],
    ["maintenance"],
]

# Every command given an account (`--account`, or `--api-key` of an existing account).
ACCOUNT_TAKERS = [
    ["jobs", "list", "--account", "nosuch"],
    ["jobs", "create", "--account", "nosuch", "--subject", NUMBER],
    ["policies", "show", "--account", "nosuch"],
    ["policies", "set", "--account", "nosuch", "--product", "sms", "--auto-redact", "off"],
    ["holds", "create", "--account", "nosuch", "--reason", "case 1", "--subject", NUMBER],
    ["holds", "list", "--account", "nosuch"],
    ["webhooks", "create", "--account", "nosuch", "--url", "https://example.com/h"],
    ["webhooks", "list", "--account", "nosuch"],
    ["suppressions", "add", "--account", "nosuch", NUMBER],
    ["suppressions", "list", "--account", "nosuch"],
    ["suppressions", "lift", "--account", "nosuch", "sup_x"],
    ["accounts", "rotate-secret", "--api-key", "nosuch"],
]


@pytest.fixture
def nowhere(tmp_path, monkeypatch):
    """An empty working directory and no DATABASE_URL: the default store, not there."""
    monkeypatch.chdir(tmp_path)
    return {"DATABASE_URL": None}


@pytest.mark.parametrize("args", READERS, ids=" ".join)
def test_a_command_reading_a_store_refuses_one_that_is_not_there(nowhere, tmp_path, args):
    result = cli(nowhere, *args)
    one_line_error(
        result,
        f"error: no store at {tmp_path / 'redact.db'} (DATABASE_URL=sqlite:///redact.db);"
        " run 'redact serve' or 'redact migrate' to create one, or set DATABASE_URL",
        1,
    )
    assert os.listdir(tmp_path) == []


def test_the_store_named_is_the_one_looked_for(tmp_path):
    missing = tmp_path / "elsewhere" / "store.db"
    result = cli({"DATABASE_URL": f"sqlite:///{missing}"}, "jobs", "list", "--account", "a")
    one_line_error(result, f"no store at {missing} (DATABASE_URL=sqlite:///{missing})", 1)
    assert os.listdir(tmp_path) == []


def test_receipts_verify_refuses_a_missing_store_for_its_keys(nowhere, tmp_path):
    one_line_error(cli(nowhere, "receipts", "verify", "-", stdin="x.y.z"), "no store at", 1)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "args,stdin",
    [
        (["migrate"], None),
        (["accounts", "create", "--api-key", "acct0001"], None),
        (["transactions", "load", "-"], ""),
    ],
    ids=["migrate", "accounts create", "transactions load"],
)
def test_a_command_putting_the_first_data_in_makes_the_store(nowhere, tmp_path, args, stdin):
    cli(nowhere, *args, stdin=stdin, check=True)
    assert "redact.db" in os.listdir(tmp_path)
    listed = cli(nowhere, "jobs", "list", "--account", "acct0001")
    if args[0] == "accounts":
        assert json.loads(listed.stdout)["data"] == []
    else:
        one_line_error(listed, "no account 'acct0001'", 1)


def test_an_unknown_account_is_the_same_error_from_every_command(env):
    cli(env, "migrate", check=True)
    for args in ACCOUNT_TAKERS:
        result = cli(env, *args)
        assert (result.returncode, result.stdout, result.stderr) == (
            1,
            "",
            "error: no account 'nosuch'\n",
        ), args


def test_errors_are_one_lower_case_line(env):
    cli(env, "migrate", check=True)
    for args in (["holds", "show", "hold_x"], ["webhooks", "show", "whk_x"], ["jobs", "list"]):
        result = cli(env, *args)
        one_line_error(result, "")
        assert result.stderr[len("error: ")].islower(), result.stderr


def test_the_help_names_the_environment():
    top = cli({}, "--help", check=True).stdout
    for variable in (
        "DATABASE_URL",
        "REDACT_KEYSTORE_URL",
        "REDACT_QUEUE_URL",
        "RATELIMIT_STORAGE_URI",
        "REDACT_SUBJECT_KEY",
    ):
        assert variable in top
    for name in main.commands:
        assert "DATABASE_URL" in cli({}, name, "--help", check=True).stdout, name


def test_the_documented_command_lines_are_the_commands_there_are():
    """Each line of docs/operating.md's command-line synopsis names a command and options
    it has, and the error it shows for a missing store is the one tested above."""
    text = (ROOT / "docs" / "operating.md").read_text()
    section = text[text.index("## Command line") :]
    synopsis = section[section.index("```\n") + 4 : section.index("\n```", section.index("```\n"))]
    lines = [line for line in synopsis.splitlines() if line.startswith(".venv/bin/redact ")]
    assert len(lines) > 20, "the synopsis spells the command .venv/bin/redact"
    for line in lines:
        words = line.split()[1:]
        command = main
        while isinstance(command, click.Group) and words and words[0] in command.commands:
            command = command.commands[words.pop(0)]
        assert command is not main or words == ["--version"], line
        options = {opt for param in command.params for opt in param.opts + param.secondary_opts}
        options |= {"--version"} if command is main else set()
        for option in re.findall(r"(--[a-z-]+)", line):
            assert option in options, (line, option)
    missing = "error: no store at /srv/redact/redact.db (DATABASE_URL=sqlite:///redact.db);"
    assert missing in section
