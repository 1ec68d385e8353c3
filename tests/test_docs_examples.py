"""The shell examples of the documentation, run as a reader runs them: every command of
every ```sh block of the pages below, in order, against a `redact serve --demo` of the
page's own (a fresh store), from a directory where `.venv/bin/redact` is this install.

A comment line that starts with a status (`# 204: redacted`, `# 200 {...}`) is what the
docs say the next curl command (or loop) answers: it must answer exactly that status.
Every other curl command must answer below 400, and every `redact` command must exit 0. An
id the docs elide (`hold_...`, `rj_...`) is the last id of that kind an earlier answer of
the page gave. A pipeline (`seq 400 | xargs ... curl ... | uniq -c`) runs as written, and
its output must name the status its comment gives (the 429 example must produce 429s).

Pages whose examples need more than the demo (docs/scaling.md: PostgreSQL and Redis on
other hosts) are not run here; docs/jobs.md's example is compared with the service's
output in tests/test_jobs_waiting.py."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

from tests.support import ROOT, SUBJECT_KEY, served

pytestmark = pytest.mark.slow

PAGES = ("README.md", "docs/api.md", "docs/records.md", "docs/webhooks.md", "docs/erasure.md")
DOCS_BASE = "http://127.0.0.1:8000"
STATUS = re.compile(r"^# (\d{3})\b")
ELIDED = re.compile(r"\b([a-z]+)_\.\.\.")
REDACT = ("redact ", ".venv/bin/redact ")


def commands(page: str) -> list[tuple[str | None, str]]:
    """Each command of the page's sh blocks, with the status its comment names (or None)."""
    found = []
    text = (ROOT / page).read_text()
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        expected = None
        lines = block.splitlines()
        i = 0
        while i < len(lines):
            line = lines[i]
            if not line.strip():
                i += 1
                continue
            if line.startswith("#"):
                match = STATUS.match(line)
                if match:
                    expected = match.group(1)
                i += 1
                continue
            command = line
            while command.endswith("\\") or _open_quote(command):
                i += 1
                command += "\n" + lines[i]  # as bash reads it: the backslash continues
            if command.startswith(REDACT):
                found.append((None, command))  # a status comment names the next curl's
            else:
                found.append((expected, command))
                expected = None
            i += 1
    return found


def _open_quote(command: str) -> bool:
    """Whether a single-quoted string is still open at the end of `command`."""
    return command.count("'") % 2 == 1


def run(command: str, base: str, cwd: pathlib.Path, env: dict, ids: dict) -> tuple[str, int]:
    for kind in set(ELIDED.findall(command)):
        assert kind in ids, f"no earlier answer gave a {kind}_ id for: {command}"
        command = command.replace(f"{kind}_...", ids[kind])
    command = command.replace(DOCS_BASE, base)
    if command.startswith("curl "):
        command += " -w '\\nstatus=%{http_code}\\n'"
    done = subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    for kind, value in re.findall(r'"id": ?"([a-z]+)_([A-Za-z0-9]+)"', done.stdout):
        ids[kind] = f"{kind}_{value}"
    return done.stdout + done.stderr, done.returncode


@pytest.mark.parametrize("page", PAGES)
def test_every_shell_example_answers_as_documented(page, tmp_path):
    (tmp_path / ".venv").symlink_to(pathlib.Path(sys.executable).parent.parent)
    env = {
        **os.environ,
        "PATH": f"{pathlib.Path(sys.executable).parent}:{os.environ['PATH']}",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'redact.db'}",
        "REDACT_SUBJECT_KEY": SUBJECT_KEY,
    }
    examples = commands(page)
    assert examples, f"{page} has no shell example"
    ids: dict[str, str] = {}
    with served(env, tmp_path, "--demo") as (_, base):
        for expected, command in examples:
            output, code = run(command, base, tmp_path, env, ids)
            where = f"{page}: {command}\n{output[-1500:]}"
            if command.startswith("curl "):
                status = re.findall(r"^status=(\d{3})$", output, re.M)[-1]
                if expected is not None:
                    assert status == expected, where
                else:
                    assert int(status) < 400, where
            elif command.startswith(REDACT):
                assert code == 0, where
            else:  # a pipeline: its output names the status its comment gives
                assert code == 0, where
                assert expected is not None and expected in output.split(), where
