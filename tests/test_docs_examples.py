"""The shell examples of the documentation, run as a reader runs them, and their answers
compared with what the docs say they are: every command of every ```sh block of the
pages below, in order, against a `redact serve --demo` of the page's own (a fresh store
in an empty directory, where `.venv/bin/redact` is this install), as the README's
quickstart leaves a reader.

How a page shows an answer (tests/docs_support.py reads it):

- `# NNN ...` above a curl command (or a pipeline of curls): the status it answers.
  Then, on the same line, either the body as JSON (`# 200 {"received": 2, ...}`), or a
  problem's title and, in quotes, its detail (`# 404 Invalid ID: "ID '0A0000000DEMO0001'
  could not be found (type=MO)"`; a parenthesis after the title is prose), and a header the answer
  carries as `with Header-Name` (the command must then show headers, `curl -i`). Other
  words are prose. A curl without such a comment must answer below 400; a 204 has no
  body. A pipeline's output must name its status (the 429 example produces 429s).
- `# text` lines right below a command other than curl: what it prints, line by line.
- A ```json (or plain ```) block right after an sh block (nothing but blank lines
  between): what the block's last command answers or prints.
- "a moment later" in the comment: the answer comes once a worker has done its part; the
  command is asked again (up to 20 s) until it answers as shown.

Comparison: JSON structurally (parsed, members in any order, numbers as numbers), text
line by line. What varies from run to run is written `...`: a value `...` matches any
value, a member `...` (`{"id": "whk_...", ..., "secret": "whsec_..."}`) allows members
not shown, `{...}` is any object, `...` inside a string any text (`"hold_..."`, `"..."`),
`...` last in a list any further items. Everything else must be equal: a member the
service answers and the docs do not show, without a `...` member, is a difference.

An id the docs elide in a command (`hold_...`, `rj_...`) is the last id of that kind an
earlier answer of the page gave. A line of nothing but assignments (`AUTH=...;
JOBS=...`) is kept and run before each later command of the page.

The command is spelled `.venv/bin/redact` in every code block of README.md and docs/ (the
quickstart leaves the virtual environment unactivated, so that is what a reader can
paste); a page that spells it `redact` fails.

Not run here, and why:
- docs/scaling.md: PostgreSQL, Redis and a key store on other hosts (`db.internal`, ...).
- the `promtool` commands of docs/operating.md: tests/test_deploy.py runs them on the
  configuration made of that page's snippets (Debian's promtool, skipped without it).
- what needs time to pass: `redact serve` has no clock to inject, so a job that waits for
  the premature window to end (docs/jobs.md) is shown waiting here, and its going on by
  itself is tested with an injected clock in tests/test_jobs_waiting.py.
- README.md's Python verifier: tests/test_readme_verifier.py runs it as shown. The
  webhook receiver of docs/webhooks.md is run below, on what the service's sender sends.
- Synopses (docs/operating.md's "Command line", docs/webhooks.md's) and output shown apart
  from a command (plain ``` blocks not right after an sh block) are not commands.
- README.md's quickstart (the indented install and serve line) is what this test's
  `redact serve --demo` does; its test command is docs/testing.md's and .ci/run's."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
import subprocess
import sys
import time
from types import SimpleNamespace
from typing import cast

import pytest

from models.webhooks.endpoints import new_secret
from models.webhooks.rows import WebhookEndpoint, WebhookEvent
from models.webhooks.sending import post
from tests.docs_support import (
    SPELLING,
    Example,
    blocks,
    compare,
    differences,
    examples,
    loose_json,
    other_spelling,
)
from tests.support import ROOT, Receiver, served

PAGES = (
    "README.md",
    "docs/api.md",
    "docs/records.md",
    "docs/webhooks.md",
    "docs/erasure.md",
    "docs/jobs.md",
    "docs/operating.md",
    "docs/proof.md",
    "docs/configuration.md",
)
NOT_RUN = {
    "docs/scaling.md": "PostgreSQL, Redis and the key store on other hosts",
    "docs/architecture.md": "no command: where the code lives",
    "docs/testing.md": "the test commands: this suite is what they run",
}
ELSEWHERE = {"promtool ": "tests/test_deploy.py"}
DOCS_BASE = "http://127.0.0.1:8000"
ELIDED = re.compile(r"\b([a-z]+)_\.\.\.")
ASSIGNMENTS = re.compile(r"^\w+=\S+(?:; \w+=\S+)*$")
PATIENCE = 20.0


@dataclasses.dataclass
class Answer:
    code: int
    output: str  # stdout and stderr, for the failure message
    stdout: str
    status: str | None = None  # a curl's
    headers: str = ""
    body: str = ""


def run(
    command: str, base: str, cwd: pathlib.Path, env: dict, ids: dict, prelude: str = ""
) -> Answer:
    """The command run by bash in `cwd`, after the page's assignments (`prelude`)."""
    for kind in set(ELIDED.findall(command)):
        assert kind in ids, f"no earlier answer gave a {kind}_ id for: {command}"
        command = command.replace(f"{kind}_...", ids[kind])
    command = command.replace(DOCS_BASE, base)
    curl = command.startswith("curl ") and "| " not in command  # not a pipeline
    if curl:
        command += " -w '\\nstatus=%{http_code}\\n'"
    done = subprocess.run(
        ["bash", "-c", prelude.replace(DOCS_BASE, base) + command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    for kind, value in re.findall(r'"id": ?"([a-z]+)_([A-Za-z0-9]+)"', done.stdout):
        ids[kind] = f"{kind}_{value}"
    answer = Answer(done.returncode, done.stdout + done.stderr, done.stdout)
    if curl:
        answer.body, _, status = done.stdout.rstrip("\n").rpartition("\nstatus=")
        answer.status = status
        if " -i " in command:
            answer.headers, _, answer.body = answer.body.partition("\n\n")
    return answer


def problems(example: Example, answer: Answer) -> list[str]:
    """How the answer differs from what the page shows of it."""
    if answer.status is None and "curl " in example.command:  # a pipeline of curls
        if answer.code != 0 or example.status not in answer.stdout.split():
            return [f"exit {answer.code}, and no {example.status} in the output"]
        return []
    if answer.status is None:
        found = [] if answer.code == 0 else [f"exit {answer.code}"]
        return found + (compare(example.answer, answer.stdout) if example.answer else [])
    if example.status is not None and answer.status != example.status:
        return [f"status {answer.status}, the docs show {example.status}"]
    if example.status is None and int(answer.status) >= 400:
        return [f"status {answer.status}"]
    found = []
    if answer.status == "204" and answer.body:
        found.append(f"a 204 with a body: {answer.body!r}")
    if example.answer is not None:
        found += compare(example.answer, answer.body)
    if example.title is not None:
        body = json.loads(answer.body)
        found += differences(example.title, body.get("title"), "$.title")
        if example.detail is not None:
            found += differences(example.detail, body.get("detail"), "$.detail")
    for header in example.headers:
        if not re.search(rf"^{header}:", answer.headers, re.M | re.I):
            found.append(f"no {header} header among {answer.headers!r}")
    return found


def demo_env(tmp_path: pathlib.Path) -> dict:
    """The environment of a reader's shell after the quickstart: defaults everywhere."""
    (tmp_path / ".venv").symlink_to(pathlib.Path(sys.executable).parent.parent)
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("REDACT_", "DATABASE_URL", "RATELIMIT_", "PROMETHEUS_"))
    }
    return env | {"PATH": f"{pathlib.Path(sys.executable).parent}:{os.environ['PATH']}"}


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES)
def test_every_shell_example_answers_as_documented(page, tmp_path):
    shown = examples(page)
    assert shown, f"{page} has no shell example"
    env = demo_env(tmp_path)
    ids: dict[str, str] = {}
    prelude = ""
    with served(env, tmp_path, "--demo") as (_, base):
        for example in shown:
            if ASSIGNMENTS.match(example.command):
                prelude += example.command + "\n"
                continue
            if any(example.command.startswith(command) for command in ELSEWHERE):
                continue
            deadline = time.monotonic() + (PATIENCE if example.later else 0)
            while True:
                answer = run(example.command, base, tmp_path, env, ids, prelude)
                found = problems(example, answer)
                if not found or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert not found, f"{example.where(page)}\n{found}\n{answer.output[-2000:]}"


def test_every_page_is_run_or_says_why_not():
    pages = {"README.md", *(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))}
    assert pages == set(PAGES) | set(NOT_RUN)
    for page in NOT_RUN:
        assert page == "docs/scaling.md" or not [b for b in blocks(page) if b[0] == "sh"]


@pytest.mark.parametrize("page", sorted({*PAGES, *NOT_RUN}))
def test_the_command_is_spelled_one_way(page):
    assert not other_spelling(page), f"spell it {SPELLING}"


def test_the_spelling_check_finds_the_other_spelling():
    """The check above can fail: a page with `redact` at the start of a command, alone or
    in a substitution, fails it; a synopsis or output block too; prose does not."""
    page = (
        "Run `redact config`.\n\n```sh\nredact config\nexport K=$(redact keys generate)\n"
        ".venv/bin/redact config\ncurl http://127.0.0.1:8000/v1/redact/transaction\n```\n\n"
        "```\nredact jobs show JOB\nerror: run 'redact serve' first\n```\n"
    )
    assert [line.split(": ", 1)[1] for line in other_spelling("page.md", page)] == [
        "redact config",
        "export K=$(redact keys generate)",
        "redact jobs show JOB",
    ]


def test_the_comparison_tells_a_wrong_example():
    shown = '{"id": "whk_...", "object": "webhook_endpoint", ..., "counts": {...}}'
    answer = {"id": "whk_0a1b", "object": "webhook_endpoint", "url": "u", "counts": {"n": 1}}
    assert differences(loose_json(shown), answer) == []
    assert differences(loose_json(shown), answer | {"object": "legal_hold"})
    assert differences(loose_json(shown), answer | {"id": "hold_0a1b"})
    assert differences(loose_json(shown), answer | {"counts": 3})
    assert differences(loose_json(shown), {k: v for k, v in answer.items() if k != "url"}) == []
    assert differences(loose_json('{"a": 1}'), {"a": 1, "b": 2})  # no `...`: all shown
    assert differences(loose_json('{"a": 1}'), {"a": True})
    assert differences(loose_json('{"a": ...}'), {"a": [1]}) == []
    assert differences(loose_json("[1, ...]"), [1, 2, 3]) == []
    assert differences(loose_json("[1, ...]"), [2, 3])
    assert compare("valid: record ... of demo0001", "valid: record X of demo0001\n") == []
    assert compare("valid: record ... of demo0001", "valid: record X of demo0002\n")
    assert compare("one line", "one line\nand another\n")


def test_the_examples_are_read_with_what_they_show():
    """A page's comments become expectations the run checks (an example shown wrongly,
    e.g. another status or body, then fails the run: the checks above)."""
    by_line = {e.line: e for e in examples("docs/api.md")}
    [unauthorized] = [e for e in by_line.values() if e.status == "401"]
    assert loose_json(unauthorized.answer) == {
        "type": "UNAUTHORIZED",
        "error_title": "Unauthorized",
    }
    assert unauthorized.headers == ("WWW-Authenticate",)
    [premature] = [e for e in by_line.values() if e.title == "Premature Redaction"]
    assert premature.detail == "You must wait 60 minutes before redacting ID '0A0000000DEMO0003'"
    wrong = Example(1, "curl ...", status="404", title="Invalid ID", detail="ID 'x' ...")
    answer = Answer(0, "", "", "404", "", json.dumps({"title": "Invalid ID", "detail": "ID 'y'"}))
    assert problems(wrong, answer)
    assert problems(dataclasses.replace(wrong, status="403"), answer)
    replayed = Example(1, "curl -i ...", status="200", headers=("Idempotent-Replayed",))
    assert problems(replayed, Answer(0, "", "", "200", "content-type: application/json", ""))
    assert not problems(replayed, Answer(0, "", "", "200", "idempotent-replayed: true", ""))
    assert problems(Example(1, "curl ..."), Answer(0, "", "", "204", "", "{}"))  # a body
    assert problems(Example(1, "curl ..."), Answer(0, "", "", "404", "", ""))  # no comment


def test_the_webhook_receiver_of_the_docs_verifies_what_the_service_sends():
    """docs/webhooks.md's receiver, run as shown (its secret filled in), on a request the
    service's sender signed and sent; and refusing it altered."""
    [snippet] = [
        block for language, block, _, _ in blocks("docs/webhooks.md") if language == "python"
    ]
    secret = new_secret()
    receiver: dict = {}
    exec(snippet.replace('"whsec_..."', repr(secret)), receiver)
    event = {"type": "job.succeeded", "timestamp": "2026-12-07T00:00:00Z", "data": {}}
    with Receiver() as endpoint:
        sent = post(
            cast(WebhookEndpoint, SimpleNamespace(url=endpoint.url, secret=secret)),
            cast(WebhookEvent, SimpleNamespace(id="msg_1", payload=json.dumps(event))),
            timeout=10,
            allow_private=True,
        )
        assert sent.delivered, sent
        [delivery] = endpoint.deliveries
    body = delivery.body.encode()
    assert receiver["receive"](body, delivery.headers) == event
    assert receiver["receive"](body.replace(b"succeeded", b"failed"), delivery.headers) is None
