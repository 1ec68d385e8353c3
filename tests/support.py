"""What the tests share, in one module; the fixtures are in conftest.py. No test module
imports another: what two of them need is here.

- The test run: where PostgreSQL and Redis are (POSTGRES_URL, REDIS_URL), whether this
  is CI (IN_CI), the test clock's start (START), the test password and subject key, the
  project's version (PROJECT_VERSION).
  `unavailable` fails a test under CI=true and skips it elsewhere; `require_service`
  does so for a server that does not answer.
- Waiting: `wait_for` is the one polling loop; `wait_until_serving` waits for a server.
- Data on the current store (the one the last app or command opened): `record` builds a
  load-file record, `add_account` and `add_records` store them, `basic` makes the auth
  header, `row` reads a transaction back. `store_at` opens a store to look into it;
  `files_containing` searches an SQLite store's files; `FIRST_RELEASE` is the schema of
  the first release.
- Contracts (openapi/): `spec`, `assert_matches_contract`, `assert_job_contract`.
- Jobs: `JobsClient` drives the jobs API through a test client and drains the app's real
  queue when the test says so.
- The `redact` command: `cli` runs it in this process (click's CliRunner, through the
  console script's wrapper, so usage errors and exit codes are as users see them);
  `redact` runs the installed console script as a subprocess; `start` and `served` leave
  one running, `stop` ends it; `one_line_error` checks the commands' error format.
- Real servers: `Service` (the release step and `redact serve`, as the Procfile runs them),
  `PrivatePostgres` and `PrivateRedis` (servers of the test's own, to stop and start).
- Metrics: `samples` and `value` read a Prometheus scrape.
- Webhooks: `Receiver`, a real HTTP endpoint on 127.0.0.1 that keeps what it is sent.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime
import functools
import http.server
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from typing import NoReturn, TypeVar

import httpx
import jsonschema
import pytest
import yaml
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from app.cli import run
from app.http.validation import openapi_to_json_schema
from models import (
    PRODUCTS,
    Account,
    RedactionAudit,
    Transaction,
    create_tables,
    database,
    load_records,
    open_store,
)
from models.records.account import hash_secret
from models.records.sealed import open_fields
from models.store.state import Store, current_store, current_store_kept

T = TypeVar("T")

# ------------------------------------------------------------------------- the test run

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
# The key store of a PostgreSQL store: a database of its own beside it (made if missing).
POSTGRES_KEYSTORE_URL = os.environ.get("TEST_POSTGRES_KEYSTORE_URL", f"{POSTGRES_URL}_keys")
TEST_KEK = "5a" * 32
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
IN_CI = os.environ.get("CI", "").lower() == "true"

ROOT = pathlib.Path(__file__).resolve().parent.parent
# The version pyproject.toml gives the distribution (what `redact --version` must say).
PROJECT_VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
SPEC_DIR = ROOT / "openapi"

START = datetime.datetime(2026, 11, 1, 12, 0, tzinfo=datetime.UTC)
PASSWORD = "s3cret-Pa55"
SUBJECT_KEY = "test-subject-key-0123456789"
# A fixed signing key for the stores that have no key file (PostgreSQL).
SIGNING_KEY = (
    '{"crv": "Ed25519", "d": "CxtlmMs54B0opWRCXGWO2hirMnzaeEfjMWUuzmfgF_Q", "kty": "OKP",'
    ' "x": "Y1gMp3cCuDxHVuVRNUKVwetfoXDX3nkQu8wEn-pUb8c"}'
)

REDACT = "/v1/redact/transaction"
JOBS = "/v1/redact/jobs"
PROBLEM_FIELDS = {"type", "title", "detail", "instance"}


def unavailable(what: str) -> NoReturn:
    """What the test needs is missing: CI must test it (fail), elsewhere it is skipped."""
    if IN_CI:
        pytest.fail(f"{what}, and CI must run this test")
    pytest.skip(what)


def require_marker(request, marker: str, what: str) -> None:
    """Fail a test that uses `what` without the marker `marker` (for fixtures): the fast
    set, which deselects by marker, would run it."""
    if request.node.get_closest_marker(marker) is None:
        pytest.fail(f"{request.node.nodeid} uses {what}: mark it @pytest.mark.{marker}")


def reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    if not reachable(host, port):
        unavailable(f"{name} at {host}:{port} is not reachable")


def postgres_keystore() -> str:
    """POSTGRES_KEYSTORE_URL, its database created if it is missing."""
    return postgres_database(POSTGRES_KEYSTORE_URL)


@functools.cache
def postgres_database(url: str) -> str:
    """`url` (a database on the test server), the database created if it is missing."""
    import psycopg2

    name = url.rsplit("/", 1)[1]
    with contextlib.closing(psycopg2.connect(POSTGRES_URL)) as conn:
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cursor.fetchone() is None:
                cursor.execute(f'CREATE DATABASE "{name}"')
    return url


def store_options(url: str) -> dict:
    """What `open_store` needs beside `url` in the tests: the subject key, and on
    PostgreSQL the key store's database and KEK."""
    options: dict = {"subject_key": SUBJECT_KEY.encode()}
    if not url.startswith("sqlite"):
        options.update(keystore_url=postgres_keystore(), kek=TEST_KEK)
    return options


def postgres_env(**more: str) -> dict[str, str]:
    """The environment of a `redact` command on the test PostgreSQL store."""
    return {
        "DATABASE_URL": POSTGRES_URL,
        "REDACT_SUBJECT_KEY": SUBJECT_KEY,
        "REDACT_KEYSTORE_URL": postgres_keystore(),
        "REDACT_KEK": TEST_KEK,
        **more,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ------------------------------------------------------------------------------ waiting


def wait_for(
    predicate: Callable[[], T], timeout: float = 60, interval: float = 0.05, what: str = ""
) -> T:
    """Call `predicate` until it returns something true, and return that; fail the test
    after `timeout` seconds. An assertion in `predicate` (a server that died) fails the
    test at once."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)


def wait_until_serving(process: subprocess.Popen, base: str, timeout: float = 60) -> None:
    """Wait until the server `process` answers GET /healthz at `base`."""

    def healthy() -> bool:
        try:
            return httpx.get(f"{base}/healthz").status_code == 200
        except httpx.TransportError:
            assert process.poll() is None, f"the server stopped (exit {process.returncode})"
            return False

    wait_for(healthy, timeout, interval=0.2, what=f"{base}/healthz")


# ------------------------------------------------------------------------ data and stores


class Clock:
    """The app's notion of now, moved by tests."""

    def __init__(self, now: datetime.datetime = START):
        self.now = now

    def __call__(self) -> datetime.datetime:
        return self.now

    def advance(self, **delta) -> None:
        self.now += datetime.timedelta(**delta)


def basic(api_key: str, secret: str = PASSWORD) -> dict:
    token = base64.b64encode(f"{api_key}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@functools.cache
def password_hash() -> str:
    """PASSWORD as Account.register stores a secret (scrypt, ~30 ms), hashed once per test
    run: the accounts the tests provision share it. Authentication still checks it in
    full; `Account.register` itself is tested through `redact accounts create`."""
    return hash_secret(PASSWORD)


def add_account(api_key: str, products=PRODUCTS) -> dict:
    """An account on the current store (every product unless `products`), with the test
    password, as Account.register makes it; its headers."""
    with database.connection_context():
        Account.create(
            api_key=api_key,
            secret_hash=password_hash(),
            products=",".join(p for p in PRODUCTS if p in products),
        )
    return basic(api_key)


def audit_for(trace_id: str) -> list[str]:
    """The ids of the records audited as redacted under `trace_id` (a job's id), sorted."""
    with database.connection_context():
        return sorted(
            a.transaction_id
            for a in RedactionAudit.select().where(RedactionAudit.trace_id == trace_id)
        )


def add_records(*records: dict) -> int:
    with database.connection_context():
        return load_records(json.dumps(r) for r in records).stored


def hold_sms(transaction_id: str, api_key: str = "acct0001"):
    """A legal hold of the account's SMS `transaction_id`, created at START (on the
    caller's connection, or one of its own)."""
    from models.erasure.holds import create_hold

    with contextlib.ExitStack() as stack:
        if database.is_closed():
            stack.enter_context(database.connection_context())
        return create_hold(
            api_key=api_key,
            subjects=[],
            transactions=[{"id": transaction_id, "product": "sms"}],
            reason="test",
            now=START,
            actor="test",
        )


def record(
    id: str,
    *,
    api_key="acct0001",
    product="sms",
    age=datetime.timedelta(hours=2),
    now=START,
    **fields,
) -> dict:
    """A load-file record `age` older than `now`."""
    data = {"id": id, "api_key": api_key, "product": product, "created_at": (now - age).isoformat()}
    data.update({"from": "447700900001", "to": "447700900002"})
    if product in ("sms", "messages"):
        data["text"] = "hello there"
    data.update(fields)
    return data


def row(transaction_id: str, api_key: str | None = None) -> Transaction:
    """The stored record `transaction_id` (of account `api_key`, when several hold the id),
    its sealed fields opened (`opened`)."""
    named = Transaction.id == transaction_id
    if api_key is not None:
        named &= Transaction.account == api_key
    with database.connection_context():
        return opened(Transaction.get(named))


def scrubs_committed() -> None:
    """Wait until the current store's writer has committed what it holds. The Redact API
    answers once a record's key is destroyed, and the scrub commits a moment later
    (docs/erasure.md): a test that then reads the database or its files itself, rather
    than through the API (which waits for it), waits for that commit first."""
    current_store().group_commit.run(_nothing_to_write, None)


def _nothing_to_write(items: list) -> list:
    return [None] * len(items)


def opened(record: Transaction) -> Transaction:
    """`record` with its personal fields opened with its data key from the current
    store's key store, as the records API reads them (REDACTED once the key is gone)."""
    if record.key_id is not None:
        key = current_store().keystore.fetch([record.key_id]).get(record.key_id)
        record.sender, record.recipient, record.body, record.details = open_fields(
            key,
            record.api_key,
            record.id,
            record.product,
            record.sender,
            record.recipient,
            record.body,
            record.details,
        )
    return record


@contextlib.contextmanager
def store_at(url: str, *, tables: bool = False) -> Iterator[Store]:
    """The store at `url` opened in this process (the current one) for the block, its
    tables created or upgraded if `tables`; closed after it, and the store current before
    is current again."""
    with current_store_kept():
        store = open_store(url, **store_options(url))
        if tables:
            create_tables()
        yield store


def files_containing(db_path: pathlib.Path, marker: bytes) -> list[str]:
    """The names of the SQLite store's files (database, journal, key, lock) that contain
    `marker`."""
    found = []
    for path in db_path.parent.iterdir():
        if path.name.startswith(db_path.name) and marker in path.read_bytes():
            found.append(path.name)
    return found


# The tables as the first release created them, with two records of that time.
FIRST_RELEASE = """
CREATE TABLE "account" ("api_key" VARCHAR(64) NOT NULL PRIMARY KEY,
  "secret_hash" VARCHAR(200) NOT NULL, "products" VARCHAR(200) NOT NULL,
  "created_at" DATETIME NOT NULL);
CREATE TABLE "transaction" ("id" VARCHAR(64) NOT NULL PRIMARY KEY,
  "api_key" VARCHAR(64) NOT NULL, "product" VARCHAR(20) NOT NULL, "direction" VARCHAR(10),
  "created_at" DATETIME NOT NULL, "sender" TEXT, "recipient" TEXT, "body" TEXT,
  "details" TEXT, "redacted_at" DATETIME,
  FOREIGN KEY ("api_key") REFERENCES "account" ("api_key") ON DELETE CASCADE);
CREATE INDEX "transaction_api_key" ON "transaction" ("api_key");
CREATE TABLE "redaction_audit" ("id" INTEGER NOT NULL PRIMARY KEY, "at" DATETIME NOT NULL,
  "api_key" VARCHAR(64) NOT NULL, "transaction_id" VARCHAR(64) NOT NULL,
  "product" VARCHAR(20) NOT NULL, "trace_id" VARCHAR(64) NOT NULL,
  "source" VARCHAR(20) NOT NULL);
INSERT INTO "account" VALUES ('acct0001', 'x', 'sms,voice', '2026-01-01 00:00:00');
INSERT INTO "transaction" VALUES ('OLD1', 'acct0001', 'sms', 'outbound',
  '2026-01-01 00:00:00', 'Vonage', '+44 7700 900777', 'hello', NULL, NULL);
INSERT INTO "transaction" VALUES ('OLD2', 'acct0001', 'voice', NULL,
  '2026-01-01 00:00:00', '447700900777', '447700900001', NULL, NULL, NULL);
"""


# ---------------------------------------------------------------------------- contracts


@functools.cache
def spec(name: str = "redact.yml") -> dict:
    return yaml.safe_load((SPEC_DIR / name).read_text())


def operation_ids(document: dict) -> set[str]:
    """The operationIds of a contract's operations."""
    return {
        operation["operationId"]
        for methods in document["paths"].values()
        for operation in methods.values()
        if isinstance(operation, dict) and "operationId" in operation
    }


def _resolve(document: dict, node: dict) -> dict:
    while "$ref" in node:
        node = functools.reduce(dict.__getitem__, node["$ref"][2:].split("/"), document)
    return node


def fuzz_headers(case, credentials: dict) -> dict | None:
    """The headers a fuzzed case is sent with: our credentials, unless the case broke its
    own headers on purpose (a negative case without or with a malformed Authorization:
    adding ours would send a valid request where a refusal is expected)."""
    from schemathesis.core.parameters import ParameterLocation

    header = case.meta.components.get(ParameterLocation.HEADER) if case.meta else None
    if header is not None and header.mode.is_negative:
        return None
    return credentials


def fuzzable(schema, operation, mode) -> bool:
    """Whether Schemathesis can make a case of `operation` in `mode`: a negative case needs
    something to send wrong (a parameter, a body, or credentials); the public keys'
    operation has none."""
    from schemathesis.generation import GenerationMode

    raw = schema.raw_schema["paths"][operation.path][operation.method.lower()]
    return mode != GenerationMode.NEGATIVE or bool(
        raw.get("parameters") or raw.get("requestBody") or raw.get("security")
    )


def assert_matches_contract(
    response, path: str = "/transaction", method: str = "post", spec_name: str = "redact.yml"
):
    """The response's status is one the operation documents and its body matches that
    status's schema; returns the parsed body (None if the contract says no content)."""
    document = spec(spec_name)
    responses = document["paths"][path][method]["responses"]
    status = str(response.status_code)
    assert status in responses, f"status {status} is not in the contract"
    content = _resolve(document, responses[status]).get("content")
    if content is None:
        assert response.content == b"", "a response without content in the contract has a body"
        return None
    assert response.headers["content-type"].startswith("application/json")
    schema = openapi_to_json_schema(
        {**content["application/json"]["schema"], "components": document["components"]}
    )
    body = response.json()
    jsonschema.Draft4Validator(schema).validate(body)
    return body


def assert_job_contract(response, path: str, method: str):
    return assert_matches_contract(response, path, method, "jobs.yml")


# --------------------------------------------------------------------------------- jobs


@dataclasses.dataclass
class JobsClient:
    """The jobs API through `client` as the account of `headers`; `queue` is the app's
    real queue, whose tasks run when the test calls `drain` (None for a live server)."""

    client: object
    headers: dict
    queue: object

    def create(self, transactions=(), subjects=(), expect: int = 200, headers=None, **fields):
        objects = {}
        if transactions:
            objects["transactions"] = [
                t if isinstance(t, dict) else {"id": t, "product": "sms"} for t in transactions
            ]
        if subjects:
            objects["subjects"] = list(subjects)
        response = self.client.post(
            JOBS, json={"objects": objects, **fields}, headers={**self.headers, **(headers or {})}
        )
        assert response.status_code == expect, response.text
        return response.json()

    def get(self, job_id: str, expect: int = 200, **params):
        response = self.client.get(f"{JOBS}/{job_id}", params=params, headers=self.headers)
        assert response.status_code == expect, response.text
        return response.json()

    def action(self, job_id: str, action: str, expect: int | None = None, **body):
        response = self.client.post(
            f"{JOBS}/{job_id}/{action}", json=body or None, headers=self.headers
        )
        if expect is not None:
            assert response.status_code == expect, response.text
        return response

    def update(self, job_id: str, expect: int = 200, **body):
        response = self.client.post(f"{JOBS}/{job_id}", json=body, headers=self.headers)
        assert response.status_code == expect, response.text
        return response.json()

    def errors(self, job_id: str, **params):
        response = self.client.get(
            f"{JOBS}/{job_id}/validation_errors", params=params, headers=self.headers
        )
        assert response.status_code == 200, response.text
        return response.json()

    def drain(self) -> int:
        """Run what the queue holds (and what is scheduled by now), as a worker would."""
        return self.queue.drain()

    def ready(self, transactions=(), subjects=(), **fields):
        """A job created and validated, expected ready."""
        job = self.create(transactions, subjects, **fields)
        self.drain()
        job = self.get(job["id"])
        assert job["status"] == "ready", (job, self.errors(job["id"]))
        return job


# ------------------------------------------------------------------- the redact command


class _ConsoleScript:
    """`app.cli.run`, the console script's entry point, in the shape CliRunner invokes a
    command: click's usage errors become our one-line errors and exit codes, as in the
    installed `redact`."""

    name = "redact"

    def main(self, args, prog_name, **_):
        argv = sys.argv
        sys.argv = [prog_name, *args]
        try:
            run()
        finally:
            sys.argv = argv


def cli(
    env: dict, *args: str, stdin: str | None = None, check: bool = False
) -> subprocess.CompletedProcess:
    """`redact ARGS` run in this process (click's CliRunner) with `env` added to the
    environment; its exit code and output, as a subprocess's would be. The store it opens
    is closed after it, and the one current before is current again (`current_store_kept`).
    With `check`, the test fails unless it succeeded."""
    with current_store_kept():
        result = CliRunner().invoke(
            _ConsoleScript(), list(args), input=stdin, env=env, catch_exceptions=False
        )
    done = subprocess.CompletedProcess(
        ["redact", *args], result.exit_code, result.stdout, result.stderr
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done


def redact_command(*args: str) -> list[str]:
    """The installed console script `redact` (beside this Python), with `args`."""
    script = os.path.join(os.path.dirname(sys.executable), "redact")
    assert os.path.exists(script), f"{script} is missing: pip install -e '.[test]'"
    return [script, *args]


def redact(
    env: dict, *args: str, stdin: str | None = None, check: bool = False, timeout: float = 120
) -> subprocess.CompletedProcess:
    """`redact ARGS` as a process, with `env` added to the environment; with `check`, the
    test fails unless it succeeded."""
    done = subprocess.run(
        redact_command(*args),
        env={**os.environ, **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done


def one_line_error(result: subprocess.CompletedProcess, fragment: str, code: int | None = None):
    """The command failed (with exit `code`, if given) with one line on stderr, `error: `
    and a message containing `fragment`, and printed nothing on stdout."""
    assert result.returncode != 0
    if code is not None:
        assert result.returncode == code, (result.returncode, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and fragment in lines[0], lines[0]


def start(env: dict, cwd, *args: str, log: str | None = None) -> subprocess.Popen:
    """`redact ARGS` started in `cwd` with `env` added to the environment; its stdout goes
    to cwd/<log>.out and its stderr to cwd/<log>.log (`log`: the command's name)."""
    log = log or args[0]
    with (
        open(os.path.join(cwd, f"{log}.out"), "wb") as out,
        open(os.path.join(cwd, f"{log}.log"), "wb") as err,
    ):
        return subprocess.Popen(
            redact_command(*args), env={**os.environ, **env}, cwd=cwd, stdout=out, stderr=err
        )


def stop(process: subprocess.Popen) -> None:
    """SIGTERM, and wait for it to end."""
    if process.poll() is None:
        process.terminate()
    process.wait(timeout=30)


@contextlib.contextmanager
def served(env: dict, cwd, *args: str, timeout: float = 60) -> Iterator[tuple]:
    """`redact serve --port N ARGS` running (answering /healthz) for the block:
    (process, base URL); stopped after it. Its output is in cwd/serve.out and .log."""
    port = free_port()
    process = start(env, cwd, "serve", "--port", str(port), *args)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(process, base, timeout)
        yield process, base
    finally:
        stop(process)


# ------------------------------------------------------------------------- real servers


class Service:
    """The service as the Procfile runs it: the release step (`redact migrate`), then
    `redact serve --no-jobs` with `workers` workers; stderr in cwd/service.log."""

    def __init__(self, env: dict, cwd, workers: int = 1):
        self.env = {**os.environ, **env}
        self.cwd = cwd
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Service:
        redact(self.env, "migrate", check=True, timeout=60)
        with open(os.path.join(self.cwd, "service.log"), "wb") as log:
            self.process = subprocess.Popen(
                [
                    *(sys.executable, "-m", "app.cli", "serve", "--no-jobs"),
                    *("--port", str(self.port), "--workers", str(self.workers)),
                ],
                env=self.env,
                cwd=self.cwd,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        try:
            wait_until_serving(self.process, self.base)
        except BaseException:
            stop(self.process)
            raise
        return self

    def __exit__(self, *exc) -> None:
        stop(self.process)

    def worker_pids(self) -> list[int]:
        assert self.process is not None
        return worker_pids(self.process.pid)


def worker_pids(parent: int) -> list[int]:
    """The worker processes of `redact serve --workers N` running as `parent` (its
    children that multiprocessing spawned; not its resource tracker)."""
    with open(f"/proc/{parent}/task/{parent}/children") as children:
        pids = [int(child) for child in children.read().split()]
    workers = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                if b"spawn_main" in cmdline.read():
                    workers.append(pid)
        except OSError:  # gone meanwhile
            continue
    return workers


def _postgres_bin() -> str | None:
    root = "/usr/lib/postgresql"
    if not os.path.isdir(root):
        return None
    versions = sorted(os.listdir(root), key=lambda v: int(v) if v.isdigit() else 0)
    return os.path.join(root, versions[-1], "bin") if versions else None


class PrivatePostgres:
    """A PostgreSQL cluster of its own in a temporary directory, on a port of its own (so
    stopping it leaves the machine's alone), run as the `postgres` user when the tests run
    as root (PostgreSQL refuses root). Created stopped."""

    def __init__(self):
        self.bin = _postgres_bin()
        if self.bin is None:
            unavailable("PostgreSQL's server programs (/usr/lib/postgresql) are missing")
        self.port = free_port()
        self.directory = tempfile.mkdtemp(prefix="redact-pg-")
        self.data = os.path.join(self.directory, "data")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres")
        self._run("initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync")

    def _run(self, program: str, *args: str, check: bool = True) -> None:
        command = [os.path.join(self.bin, program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=check, capture_output=True, timeout=60)

    def start(self) -> None:
        self._run(
            "pg_ctl",
            "-D",
            self.data,
            "-w",
            "-l",
            os.path.join(self.directory, "log"),
            "-o",
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off",
            "start",
        )

    def stop(self, mode: str = "immediate") -> None:
        """Stop the server; `immediate` is a crash: no shutdown checkpoint."""
        self._run("pg_ctl", "-D", self.data, "-w", "-m", mode, "stop")

    def destroy(self) -> None:
        self._run("pg_ctl", "-D", self.data, "-m", "immediate", "stop", check=False)
        shutil.rmtree(self.directory, ignore_errors=True)


class PrivateRedis:
    """A Redis server of its own on a port of its own, keeping nothing on disk (as the
    machine's Redis)."""

    def __init__(self):
        self.program = shutil.which("redis-server")
        if self.program is None:
            unavailable("redis-server is not installed")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.program,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: reachable("127.0.0.1", self.port), timeout=10, what="redis-server")

    def stop(self) -> None:
        """Kill the server (SIGKILL): its data is gone, as with a Redis that keeps none."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=30)
            self.process = None


# ------------------------------------------------------------------------------ metrics

TOKEN = "scrape-token-0123"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


def samples(text: str) -> dict:
    """{(name, ((label, value), ...)): value} of a scrape."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(scrape: dict, name: str, **labels) -> float:
    return scrape.get((name, tuple(sorted(labels.items()))), 0.0)


# ----------------------------------------------------------------------------- webhooks


@dataclasses.dataclass
class Delivery:
    """One request a Receiver was sent: its headers (names in lower case) and body."""

    headers: dict[str, str]
    body: str

    @property
    def event(self) -> dict:
        return json.loads(self.body)


class Receiver:
    """A webhook endpoint: an HTTP server on 127.0.0.1 (`port`, any free one by default)
    in a thread, keeping each request it is sent (`deliveries`), answering `status`.
    `hold` (an Event), when set to a cleared Event, keeps each request waiting until it
    is set; `arrived` is set by every request."""

    def __init__(self, port: int = 0, status: int = 200):
        self.deliveries: list[Delivery] = []
        self.status = status
        self.hold: threading.Event | None = None
        self.arrived = threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("content-length", 0))
                body = self.rfile.read(length).decode()
                receiver.deliveries.append(
                    Delivery({k.lower(): v for k, v in self.headers.items()}, body)
                )
                receiver.arrived.set()
                if receiver.hold is not None:
                    receiver.hold.wait(60)
                try:
                    self.send_response(receiver.status)
                    self.send_header("content-length", "0")
                    self.end_headers()
                except OSError:  # the sender is gone (a worker killed mid-request)
                    pass

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        if self.hold is not None:
            self.hold.set()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Trickler:
    """A webhook receiver that never finishes answering: on 127.0.0.1 (any free port), it
    takes each connection and its request, then sends the start of an answer one byte
    every `interval` seconds (or nothing at all, if `interval` is None) until the sender
    hangs up. `closed` holds, per connection, the seconds from its request to the hang-up."""

    ANSWER = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n" + b"x-slow: 1\r\n" * 100

    def __init__(self, interval: float | None = 1.0):
        self.interval = interval
        self.closed: list[float] = []
        self.requests = 0
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        with connection:
            connection.settimeout(0.2)
            request = b""
            while b"\r\n\r\n" not in request and not self._stop.is_set():
                try:
                    request += connection.recv(65536)
                except TimeoutError:
                    continue
            self.requests += 1
            connection.settimeout(None)  # MSG_DONTWAIT below answers at once
            sent = 0
            started = time.monotonic()
            while not self._stop.wait(0.05):
                try:
                    if connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                        break  # the sender hung up
                except BlockingIOError:
                    pass
                except OSError:
                    break
                due = self.interval is not None and (
                    time.monotonic() - started >= (sent + 1) * self.interval
                )
                if due and sent < len(self.ANSWER):
                    try:
                        connection.send(self.ANSWER[sent : sent + 1])
                    except OSError:
                        break
                    sent += 1
            else:
                return
            self.closed.append(time.monotonic() - started)

    def close(self) -> None:
        self._stop.set()
        self._listener.close()

    def __enter__(self) -> Trickler:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
