"""Throughput and latency of the Redact service, against the floor of its HTTP stack, the
framework as it comes, and a mock of the contract.

The service is served as the Procfile serves it (`redact serve --no-jobs --workers 2`:
the parent hands each connection to the least-loaded worker), the other Python apps by
gunicorn with 2 uvicorn workers (`uvicorn_worker.UvicornWorker`), all on loopback, and
every row is loaded with wrk (2
threads, --connections, --duration, after an uncounted 2 s warm-up) sending the same
request, `POST /v1/redact/transaction` with basic auth and a JSON body. The rows, by the
names --only takes:

  bare           a bare ASGI app that parses the JSON body and answers 204: the floor of
                 the HTTP stack (bench/bare_asgi.py);
  flask-untuned  an untuned Connexion FlaskApp with the same spec and a handler that does
                 nothing but 204: the framework the service was built on, as it comes
                 (bench/untuned.py; needs Flask: `connexion[flask]`);
  async-untuned  the same as an untuned Connexion AsyncApp, `async def` handler, every
                 default kept: the framework the service moves to, as it comes
                 (bench/untuned_async.py);
  prism          Stoplight Prism's mock of openapi/redact.yml, `prism mock` with its
                 defaults (static examples, request and basic-auth validation, a log of
                 several info lines per request, here to a file): ONE Node process, as a
                 user runs it, against the others' two workers. npm installs it into
                 bench/.prism on first use. Prism ignores the spec's server path
                 (/v1/redact) by design, so this row alone is sent to `/transaction`, with
                 the same headers and body; the probe below checks it answers the
                 contract's 204;
  sqlite         the real service on SQLite (in-memory limiter), redacting a fresh record
                 per request;
  postgres       the same on PostgreSQL with the limiter in Redis (skipped if either is
                 unreachable, or with --skip-postgres).

The service runs with REDACT_RATE_LIMIT so high that the limiter counts every request
but never refuses one. req/s is wrk's count of all responses. wrk counts 4xx and 5xx as
errors (the non-2xx column); so that no 1xx or 3xx slips through, one probe request
before each stub row's warm-up must be answered 204. Any non-2xx response or socket
error makes the run invalid, and the report says so. The start column is the seconds
from launch to the first HTTP answer.

Then the ratios of req/s of each service row (sqlite, postgres) over each baseline:

  full/bare ASGI         what the service costs over the HTTP stack;
  full/Prism             against a mock that only validates and answers: the targets are
                         SQLite >= 1.5 (moonshot 2.0) and PostgreSQL+Redis >= 1.2;
  full/untuned FlaskApp  against the framework the service was built on, as it comes;
  full/untuned AsyncApp  against the framework it moves to, as it comes: the stretch
                         target is SQLite >= 1.0.

Each target is reported MET or MISSED, or not measured when --only left a row out.

For sqlite and postgres, an open-loop run (bench/paced.py, after a 2 s warm-up) then offers
170 requests/s, the default per-account rate limit, for 60 s: request i is sent at
t0 + i/170 whatever the earlier ones are doing, and its latency runs from that scheduled
time, so queueing is counted (the client shares the machine's 2 cores); the target is
p99 <= 5 ms on both. The same paced run against the bare ASGI app (when its row runs)
prints the floor of that client and loopback, with no service behind them. On SQLite,
once the service has stopped, bench/floor.py makes the two durable commits of as many
fresh redactions (the key store's, then the data store's) with raw sqlite3, at the same
rate on the same files: the floor the disk sets under that p99; then the key store's
commits alone, the floor of any design that answers at the key's destruction. After each
of the service's runs the records sent are counted in the database: at least as many
must be redacted as 2xx responses came back, which proves the requests did real work.

A row that cannot start (a server exits, Prism does not install) is reported as failed
and the other rows go on. Missing tools or Python packages for the chosen rows stop the
run before anything starts, with one line saying what to install.

    python bench/run.py [--duration 10] [--connections 32] [--skip-postgres]
                        [--only bare,flask-untuned,async-untuned,prism,sqlite,postgres]
                        [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import dataclasses
import datetime
import functools
import importlib.util
import json
import math
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # imported as bench.run too
from paced import PacedResult, send_paced

try:
    import httpx
except ModuleNotFoundError as exc:  # one line, not a traceback
    sys.exit(f"error: bench/run.py needs the Python package {exc.name} (pip install httpx)")

# The service's own modules (models, psycopg2, redis) are imported where the service rows
# use them, so that the baseline rows run without them (see --only).

BENCH_DIR = pathlib.Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
WRK_SCRIPT = BENCH_DIR / "redact.lua"
SPEC = "openapi/redact.yml"  # relative to ROOT, as a user would name it to Prism

API_KEY, API_SECRET = "bench001", "bench-secret-1"
AUTH_HEADER = "Basic " + base64.b64encode(f"{API_KEY}:{API_SECRET}".encode()).decode()
PATH = "/v1/redact/transaction"
PRISM_PATH = "/transaction"  # Prism ignores the spec's server path (/v1/redact) by design
BODY = "benchmark message text"

WORKERS = 2
WRK_THREADS = 2
WARMUP_SECONDS = 2
MAX_RATE = 6000  # req/s assumed when reserving fresh ids for a wrk run
INSERT_CHUNK = 20000
START_TIMEOUT = 60

PACED_RATE = 170
PACED_SECONDS = 60
PACED_WARMUP_SECONDS = 2
PACED_P99_TARGET_MS = {"sqlite": 5, "postgres": 5}

# npm installs Prism here on first use (gitignored by bench/.gitignore). The major version
# is pinned so that the CLI's flags and defaults stay those this file was written for.
PRISM_DIR = BENCH_DIR / ".prism"
PRISM_PACKAGE = "@stoplight/prism-cli@5"
PRISM_BIN = PRISM_DIR / "node_modules" / ".bin" / "prism"
NPM_TIMEOUT = 600

PG_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=3"
PG_DATABASE = "redact_bench"
PG_URL = f"postgresql://postgres@127.0.0.1:5432/{PG_DATABASE}"
# PostgreSQL's key store: a database of its own (made if missing), the KEK given.
PG_KEYS_DATABASE = "redact_bench_keys"
PG_KEYS_URL = f"postgresql://postgres@127.0.0.1:5432/{PG_KEYS_DATABASE}"
BENCH_KEK = "3c" * 32
REDIS_URL = "redis://127.0.0.1:6379/14"

# The service under load: the limiter counts but never refuses.
SUBJECT_KEY = "bench-subject-key-000000000000"
SERVICE_ENV = {"REDACT_RATE_LIMIT": "1000000/second", "REDACT_SUBJECT_KEY": SUBJECT_KEY}


@dataclasses.dataclass(frozen=True)
class Row:
    """One row of the table: its name for --only and the JSON, its label, and what it
    needs beyond this file's own imports (checked before anything starts)."""

    key: str
    label: str
    short: str  # in the ratios and targets
    modules: tuple[str, ...] = ()  # Python modules, in this interpreter
    programs: tuple[str, ...] = ()  # executables on PATH


SERVER_MODULES = ("gunicorn", "uvicorn_worker")
SERVICE_MODULES = ("models",)
ROWS = {
    row.key: row
    for row in (
        Row("bare", "bare ASGI", "bare ASGI", SERVER_MODULES),
        Row(
            "flask-untuned",
            "untuned Connexion FlaskApp",
            "untuned FlaskApp",
            (*SERVER_MODULES, "connexion", "flask", "a2wsgi"),
        ),
        Row(
            "async-untuned",
            "untuned Connexion AsyncApp",
            "untuned AsyncApp",
            (*SERVER_MODULES, "connexion"),
        ),
        Row("prism", "Prism mock (1 Node process)", "Prism", (), ("node", "npm")),
        Row("sqlite", "redact (SQLite)", "SQLite", SERVICE_MODULES),
        Row(
            "postgres",
            "redact (PostgreSQL+Redis)",
            "PostgreSQL+Redis",
            (*SERVICE_MODULES, "psycopg2", "redis"),
        ),
    )
}
SERVICE_ROWS = ("sqlite", "postgres")

# What to install for a missing module or program: the line the run stops with.
INSTALL_HINTS = {
    "gunicorn": "pip install gunicorn",
    "uvicorn_worker": "pip install uvicorn-worker",
    "connexion": "pip install connexion",
    "flask": "pip install 'connexion[flask]'",
    "a2wsgi": "pip install 'connexion[flask]'",
    "models": "pip install -e . (the service)",
    "psycopg2": "pip install psycopg2-binary",
    "redis": "pip install redis",
    "wrk": "apt-get install wrk",
    "node": "apt-get install nodejs (>= 18.20.1)",
    "npm": "apt-get install npm",
}


@dataclasses.dataclass(frozen=True)
class RatioTarget:
    service: str  # row key
    baseline: str  # row key
    least: float
    kind: str  # "target", "stretch" or "moonshot"


# Columns of the ratio table, each a baseline row, and the targets among those ratios.
RATIO_BASELINES = ("bare", "prism", "flask-untuned", "async-untuned")
RATIO_TARGETS = (
    RatioTarget("sqlite", "prism", 1.5, "target"),
    RatioTarget("sqlite", "prism", 2.0, "moonshot"),
    RatioTarget("sqlite", "async-untuned", 1.0, "stretch"),
    RatioTarget("postgres", "prism", 1.2, "target"),
)


class BenchError(Exception):
    """The benchmark cannot go on (a server did not start, wrk failed)."""


# ---------------------------------------------------------------------------- record ids


def record_id(number: int) -> str:
    return f"0A{number:015d}"


@dataclasses.dataclass(frozen=True)
class IdRange:
    first: int
    count: int

    def ids(self) -> list[str]:
        return [record_id(n) for n in range(self.first, self.first + self.count)]


class IdAllocator:
    """Hands out disjoint ranges of record numbers, so that no request repeats an id."""

    def __init__(self):
        self.used = 0

    def take(self, count: int) -> IdRange:
        taken = IdRange(self.used, count)
        self.used += count
        return taken


def wrk_range(allocator: IdAllocator, seconds: float) -> IdRange:
    """Enough ids for a wrk run of `seconds` at up to MAX_RATE, split evenly by thread."""
    return allocator.take(math.ceil(MAX_RATE * seconds / WRK_THREADS) * WRK_THREADS)


@dataclasses.dataclass(frozen=True)
class RedactPlan:
    """The ids of every phase of one backend's run, reserved before the data is inserted."""

    warmup: IdRange
    throughput: IdRange
    paced_warmup: IdRange
    paced: IdRange
    # SQLite's: bench/floor.py's warm-up and run, two commits a request, then the key's alone
    floors: tuple[tuple[IdRange, IdRange], ...] = ()

    @classmethod
    def reserve(cls, allocator: IdAllocator, duration: float, floor: bool) -> RedactPlan:
        warmup = wrk_range(allocator, WARMUP_SECONDS)
        throughput = wrk_range(allocator, duration)
        paced_warmup, paced = paced_ranges(allocator)
        floors = (paced_ranges(allocator), paced_ranges(allocator)) if floor else ()
        return cls(warmup, throughput, paced_warmup, paced, floors)


def paced_ranges(allocator: IdAllocator) -> tuple[IdRange, IdRange]:
    """Fresh ids for a paced run's warm-up, then for the run itself."""
    return (
        allocator.take(PACED_RATE * PACED_WARMUP_SECONDS),
        allocator.take(PACED_RATE * PACED_SECONDS),
    )


# ------------------------------------------------------------------------------ database


def store_env(url: str) -> dict[str, str]:
    """What the service needs beside DATABASE_URL: on PostgreSQL, its key store and KEK."""
    if url.startswith("sqlite"):
        return {}
    return {"REDACT_KEYSTORE_URL": PG_KEYS_URL, "REDACT_KEK": BENCH_KEK}


def open_bench_store(url: str):
    from models import open_store

    extra = store_env(url)
    return open_store(
        url,
        subject_key=SUBJECT_KEY.encode(),
        keystore_url=extra.get("REDACT_KEYSTORE_URL"),
        kek=extra.get("REDACT_KEK"),
    )


def prepare_database(url: str, record_count: int) -> None:
    """Fresh tables, the bench account and `record_count` unredacted, old-enough SMS,
    stored as `redact transactions load` stores them (sealed, a data key each)."""
    from models import MODELS, Account, load_records
    from models.store.keystore import KEY_MODELS

    store = open_bench_store(url)
    db, keys = store.database, store.keystore.db
    created_at = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=2)
    with keys.connection_context(), keys.bind_ctx(KEY_MODELS):
        keys.drop_tables(KEY_MODELS, safe=True)
    store.keystore.create_tables()
    with db.connection_context():
        db.drop_tables(MODELS, safe=True)
        db.create_tables(MODELS)
        Account.register(API_KEY, API_SECRET)
        for start in range(0, record_count, INSERT_CHUNK):
            numbers = range(start, min(start + INSERT_CHUNK, record_count))
            load_records(_record(n, created_at) for n in numbers)
    store.close()


def _record(number: int, created_at: datetime.datetime) -> str:
    return json.dumps(
        {
            "id": record_id(number),
            "api_key": API_KEY,
            "product": "sms",
            "type": "outbound",
            "created_at": created_at.isoformat(),
            "from": "447700900001",
            "to": "447700900002",
            "text": BODY,
        }
    )


def count_redacted(url: str, ids: IdRange) -> int:
    """How many records of `ids` are marked redacted and hold no message text any more."""
    from models import REDACTED, Transaction

    db = open_bench_store(url).database
    with db.connection_context():
        count = (
            Transaction.select()
            .where(
                Transaction.id.between(record_id(ids.first), record_id(ids.first + ids.count - 1))
                & Transaction.redacted_at.is_null(False)
                & (Transaction.body == REDACTED)
            )
            .count()
        )
    db.close_all()
    return count


def prepare_postgres_and_redis() -> str | None:
    """Create the bench database if missing and empty the bench Redis db; return why the
    PostgreSQL + Redis run cannot happen, or None."""
    import psycopg2
    import redis

    try:
        connection = psycopg2.connect(PG_ADMIN_DSN)
    except psycopg2.Error as exc:
        return f"PostgreSQL unreachable: {str(exc).strip().splitlines()[0]}"
    try:
        connection.autocommit = True  # CREATE DATABASE refuses to run in a transaction
        with connection.cursor() as cursor:
            for name in (PG_DATABASE, PG_KEYS_DATABASE):
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cursor.fetchone() is None:
                    cursor.execute(f"CREATE DATABASE {name}")
    finally:
        connection.close()
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=3).flushdb()
    except redis.RedisError as exc:
        return f"Redis unreachable: {exc}"
    return None


# ------------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def log_tail(log_path: pathlib.Path, lines: int = 30) -> str:
    text = log_path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


def log_problems(log_path: pathlib.Path, most: int = 10) -> str:
    """The server log without its info lines (gunicorn's, the service's, Prism's) and
    traceback bodies, identical lines (timestamps and trace ids aside) counted: what went
    wrong, in a few lines."""
    lines = collections.Counter(
        re.sub(r"\b[0-9a-f]{32}\b", "<trace>", re.sub(r"^\[[^]]*\d:\d\d:\d\d[^]]*\] ", "", line))
        for line in log_path.read_text(errors="replace").splitlines()
        if line
        and not line[0].isspace()
        and "] [INFO] " not in line
        and '"level": "info"' not in line
        and line != "Traceback (most recent call last):"
        and not re.search(
            r" (\u2139  info|\u2714  success) ", line
        )  # Prism's info and success marks
    )
    return "\n".join(f"{count:>7} x {line}" for line, count in lines.most_common(most))


def gunicorn_command(app: str, port: int) -> list[str]:
    """`app` served by gunicorn with plain uvicorn workers (the baselines)."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        app,
        "--workers",
        str(WORKERS),
        "--worker-class",
        "uvicorn_worker.UvicornWorker",
        "--bind",
        f"127.0.0.1:{port}",
    ]


def service_command(port: int) -> list[str]:
    """The service exactly as the Procfile's web line serves it."""
    return [
        *(sys.executable, "-m", "app.cli", "serve", "--no-jobs"),
        *("--workers", str(WORKERS), "--port", str(port)),
    ]


def prism_command(port: int) -> list[str]:
    """Prism's mock as its README starts it: defaults, so static examples, no --errors."""
    return [str(PRISM_BIN), "mock", SPEC, "-p", str(port), "-h", "127.0.0.1"]


def install_prism(log_path: pathlib.Path) -> str:
    """Install Prism into bench/.prism unless it is there; return its version."""
    if not PRISM_BIN.exists():
        print(
            f"installing {PRISM_PACKAGE} with npm into {PRISM_DIR.relative_to(ROOT)} ...",
            flush=True,
        )
        command = [
            "npm",
            "install",
            "--prefix",
            str(PRISM_DIR),
            "--no-audit",
            "--no-fund",
            PRISM_PACKAGE,
        ]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=NPM_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise BenchError(f"npm install did not finish within {NPM_TIMEOUT} s") from None
        with log_path.open("a") as log:
            log.write(f"$ {' '.join(command)}\n{done.stdout}{done.stderr}\n")
        if done.returncode != 0 or not PRISM_BIN.exists():
            raise BenchError(f"npm install failed (exit {done.returncode}):\n" + log_tail(log_path))
    done = subprocess.run([str(PRISM_BIN), "--version"], capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


@dataclasses.dataclass(frozen=True)
class Served:
    base_url: str
    startup_s: float  # from launch to the first HTTP answer


@contextlib.contextmanager
def serve(
    command: list[str],
    port: int,
    env: dict[str, str],
    log_path: pathlib.Path,
    cwd: pathlib.Path = ROOT,
):
    """Run a server (in `cwd`, the source tree it serves) and yield it once it answers;
    always stop its whole process group on leaving."""
    with log_path.open("ab") as log:
        launched = time.monotonic()
        server = subprocess.Popen(
            command,
            cwd=cwd,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        base_url = f"http://127.0.0.1:{port}"
        wait_until_ready(server, base_url, log_path)
        yield Served(base_url, time.monotonic() - launched)
    finally:
        stop(server)


def wait_until_ready(server: subprocess.Popen, base_url: str, log_path: pathlib.Path):
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise BenchError(
                f"the server exited with code {server.returncode}:\n" + log_tail(log_path)
            )
        try:
            httpx.get(base_url + "/", timeout=1)  # any response means a worker is up
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise BenchError(f"the server did not answer within {START_TIMEOUT} s:\n" + log_tail(log_path))


def stop(server: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def probe(url: str, record: str) -> httpx.Response:
    """One request as wrk sends them (wrk's own count of errors misses 1xx and 3xx)."""
    return httpx.post(
        url,
        auth=(API_KEY, API_SECRET),
        timeout=10,
        json={"id": record, "product": "sms", "type": "outbound"},
    )


# ----------------------------------------------------------------------------------- wrk


@dataclasses.dataclass
class WrkResult:
    requests: int
    seconds: float
    non_2xx: int
    socket_errors: dict[str, int]
    p50_ms: float
    p99_ms: float
    ids_exhausted: bool

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def failures(self) -> int:
        return self.non_2xx + sum(self.socket_errors.values())

    @property
    def successes(self) -> int:
        return self.requests - self.non_2xx


def run_wrk(
    url: str, ids: IdRange, seconds: float, connections: int, log_path: pathlib.Path
) -> WrkResult:
    """One wrk run on `url` whose threads share out `ids`, one fresh id per request."""
    per_thread = ids.count // WRK_THREADS
    env = {
        **os.environ,
        "BENCH_AUTH": AUTH_HEADER,
        "BENCH_FIRST": str(ids.first),
        "BENCH_PER_THREAD": str(per_thread),
    }
    command = [
        "wrk",
        f"-t{WRK_THREADS}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "-s",
        str(WRK_SCRIPT),
        url,
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    with log_path.open("a") as log:
        log.write(f"$ {' '.join(command)}\n{done.stdout}{done.stderr}\n")
    lines = [line for line in done.stdout.splitlines() if line.startswith("BENCH_RESULT ")]
    if done.returncode != 0 or not lines:
        raise BenchError(f"wrk failed (exit {done.returncode}):\n{done.stdout}{done.stderr}")
    raw = json.loads(lines[0].removeprefix("BENCH_RESULT "))
    return WrkResult(
        requests=raw["requests"],
        seconds=raw["duration_us"] / 1e6,
        non_2xx=raw["non_2xx"],
        socket_errors=raw["socket_errors"],
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        ids_exhausted=raw["most_ids_per_thread"] > per_thread,
    )


def measure_throughput(
    url: str, warmup: IdRange, measured: IdRange, args: argparse.Namespace, log_path: pathlib.Path
) -> WrkResult:
    run_wrk(url, warmup, WARMUP_SECONDS, args.connections, log_path)
    return run_wrk(url, measured, args.duration, args.connections, log_path)


# ---------------------------------------------------------------------------- paced load


async def measure_paced(base_url: str, warmup: IdRange, measured: IdRange) -> PacedResult:
    url = base_url + PATH
    await send_paced(url, (API_KEY, API_SECRET), warmup.ids(), PACED_RATE)
    return await send_paced(url, (API_KEY, API_SECRET), measured.ids(), PACED_RATE)


# ---------------------------------------------------------------------------- the phases


@dataclasses.dataclass
class Measurement:
    key: str
    label: str
    path: str
    startup_s: float
    throughput: WrkResult
    probe_status: int | None = None  # stub rows only: a probe would spend a real record
    detail: str = ""  # e.g. the Prism version
    paced: PacedResult | None = None
    # SQLite: bench/floor.py on the same files, two commits a request, the key's alone
    paced_floors: list[PacedResult] = dataclasses.field(default_factory=list)
    redacted_throughput: int | None = None
    redacted_paced: int | None = None
    warnings: list[str] = dataclasses.field(default_factory=list)


def measure_stub(
    row: Row,
    command: Callable[[int], list[str]],
    path: str,
    args,
    log_path: pathlib.Path,
    detail: str = "",
) -> Measurement:
    """Throughput of an app that redacts nothing (the ids need not exist)."""
    print(f"measuring {row.label}{f' ({detail})' if detail else ''} ...", flush=True)
    allocator = IdAllocator()
    probe_id = record_id(allocator.take(1).first)
    warmup = wrk_range(allocator, WARMUP_SECONDS)
    measured = wrk_range(allocator, args.duration)
    port = free_port()
    with serve(command(port), port, {}, log_path) as served:
        url = served.base_url + path
        answer = probe(url, probe_id)
        if not answer.is_success:  # every request of the run would fail the same way
            raise BenchError(
                f"answered {answer.status_code} to the bench request, not "
                f"the contract's 204:\n{answer.text[:500]}"
            )
        result = measure_throughput(url, warmup, measured, args, log_path)
        paced = None
        if row.key == "bare":  # the paced client's floor: no service code behind it
            paced = asyncio.run(measure_paced(served.base_url, *paced_ranges(allocator)))
    measurement = Measurement(
        row.key,
        row.label,
        path,
        served.startup_s,
        result,
        probe_status=answer.status_code,
        detail=detail,
        paced=paced,
    )
    if answer.status_code != 204:
        measurement.warnings.append(
            f"{row.label}: answered the probe request {answer.status_code}, not the contract's 204"
        )
    check_throughput(measurement)
    note_log_problems(measurement, log_path)
    return measurement


def measure_prism(row: Row, args, log_path: pathlib.Path) -> Measurement:
    version = install_prism(log_path)
    return measure_stub(row, prism_command, PRISM_PATH, args, log_path, detail=f"Prism {version}")


def measure_service(
    row: Row, database_url: str, storage_uri: str, args, log_path: pathlib.Path
) -> Measurement:
    """Throughput and paced latency of the real service, each request a real redaction."""
    print(f"measuring {row.label} ...", flush=True)
    allocator = IdAllocator()
    sqlite_file = (
        database_url.removeprefix("sqlite:///") if database_url.startswith("sqlite") else None
    )
    plan = RedactPlan.reserve(allocator, args.duration, floor=sqlite_file is not None)
    prepare_database(database_url, allocator.used)
    env = {**SERVICE_ENV, "DATABASE_URL": database_url, "RATELIMIT_STORAGE_URI": storage_uri}
    env.update(store_env(database_url))
    port = free_port()
    with serve(service_command(port), port, env, log_path) as served:
        url = served.base_url + PATH
        result = measure_throughput(url, plan.warmup, plan.throughput, args, log_path)
        paced = asyncio.run(measure_paced(served.base_url, plan.paced_warmup, plan.paced))
    floors: list[PacedResult] = []
    if sqlite_file is not None:
        # The same rate on the same files, the service stopped: bench/floor.py, with the
        # data store's commit, then without.
        from floor import paced_floor

        for data, (warmup_ids, ids) in zip((True, False), plan.floors, strict=True):
            paced_floor(sqlite_file, warmup_ids.ids(), API_KEY, PACED_RATE, data)
            floors.append(paced_floor(sqlite_file, ids.ids(), API_KEY, PACED_RATE, data))
    measurement = Measurement(
        row.key,
        row.label,
        PATH,
        served.startup_s,
        result,
        paced=paced,
        paced_floors=floors,
        redacted_throughput=count_redacted(database_url, plan.throughput),
        redacted_paced=count_redacted(database_url, plan.paced),
    )
    check_throughput(measurement)
    check_service(measurement)
    note_log_problems(measurement, log_path)
    return measurement


def check_throughput(measurement: Measurement) -> None:
    result = measurement.throughput
    if result.failures:
        socket_errors = ", ".join(f"{n} {kind}" for kind, n in result.socket_errors.items())
        measurement.warnings.append(
            f"{measurement.label}: {result.non_2xx} non-2xx responses, socket errors: "
            f"{socket_errors}: the throughput run is NOT valid"
        )


def check_service(measurement: Measurement) -> None:
    if measurement.throughput.ids_exhausted:
        measurement.warnings.append(
            f"{measurement.label}: a wrk thread sent more than its {MAX_RATE} req/s share "
            "of fresh ids, so some requests hit redacted or missing records; raise MAX_RATE"
        )
    checks = (
        ("throughput", measurement.redacted_throughput, measurement.throughput),
        ("paced", measurement.redacted_paced, measurement.paced),
    )
    for phase, redacted, result in checks:
        if redacted < result.successes:
            measurement.warnings.append(
                f"{measurement.label}: only {redacted} records redacted for "
                f"{result.successes} 2xx responses of the {phase} run"
            )
    if measurement.paced.errors:
        measurement.warnings.append(
            f"{measurement.label}: paced run outcomes {measurement.paced.outcomes}"
        )
    for floor in measurement.paced_floors:
        if floor.errors:
            measurement.warnings.append(
                f"{measurement.label}: the floor's outcomes {floor.outcomes}"
            )


def note_log_problems(measurement: Measurement, log_path: pathlib.Path) -> None:
    if measurement.warnings:
        measurement.warnings.append(
            f"{measurement.label}: server log, apart from info lines and traceback "
            f"bodies:\n{log_problems(log_path)}"
        )


# -------------------------------------------------------------------------------- report


def ratio(by_key: dict[str, Measurement], service: str, baseline: str) -> float | None:
    """req/s of `service` over `baseline`, or None when either row was not measured."""
    if service not in by_key or baseline not in by_key:
        return None
    return by_key[service].throughput.rate / by_key[baseline].throughput.rate


def on_invalid_row(by_key: dict[str, Measurement], *keys: str) -> bool:
    return any(by_key[key].warnings for key in keys if key in by_key)


def print_report(
    selected: list[str], measurements: list[Measurement], unmeasured: dict[str, str], args
) -> None:
    by_key = {m.key: m for m in measurements}
    warnings = [w for m in measurements for w in m.warnings]
    for warning in warnings:
        print(f"\nWARNING: {warning}")
    print(
        f"\nwrk -t{WRK_THREADS} -c{args.connections} -d{args.duration}s --latency, "
        f"loopback; the service: redact serve --workers {WORKERS}; other Python apps: "
        f"gunicorn, {WORKERS} uvicorn workers; Prism: 1 Node process\n"
    )
    print(
        f"{'app':<30}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}"
        f"{'sock err':>10}{'redacted':>10}{'start s':>9}"
    )
    for key in selected:
        if key in unmeasured:
            print(f"{ROWS[key].label:<30} {unmeasured[key]}")
            continue
        m = by_key[key]
        t = m.throughput
        redacted = "" if m.redacted_throughput is None else m.redacted_throughput
        print(
            f"{m.label:<30}{t.rate:>9.0f}{t.p50_ms:>9.2f}{t.p99_ms:>9.2f}{t.non_2xx:>9}"
            f"{sum(t.socket_errors.values()):>10}{redacted:>10}{m.startup_s:>9.1f}"
        )
    print_ratios(by_key)
    for key in SERVICE_ROWS:
        p = by_key[key].paced if key in by_key else None
        target = PACED_P99_TARGET_MS[key]
        name = f"paced {PACED_RATE} req/s {ROWS[key].short}"
        if p is None:
            print(f"{name}: target p99 <= {target} ms: not measured")
            continue
        print(
            f"{name}: achieved {p.rate:.1f} req/s, p50 {p.p50_ms:.2f} p99 {p.p99_ms:.2f} "
            f"max {p.max_ms:.2f} ms (client late p99 {p.late_p99_ms:.2f}), errors {p.errors}, "
            f"redacted "
            f"{by_key[key].redacted_paced}/{p.sent} (target p99 <= {target} ms: "
            f"{'MET' if p.p99_ms <= target else 'MISSED'})"
        )
        whats = ("its two commits a request in a row", "the key store's commit alone")
        for what, f in zip(whats, by_key[key].paced_floors, strict=False):
            print(
                f"paced {PACED_RATE} req/s plain SQLite, {what} (the disk's floor, "
                f"bench/floor.py): p50 {f.p50_ms:.2f} p99 {f.p99_ms:.2f} max {f.max_ms:.2f} ms "
                f"(started late p99 {f.late_p99_ms:.2f})"
            )
    floor = by_key["bare"].paced if "bare" in by_key else None
    if floor is not None:
        print(
            f"paced {PACED_RATE} req/s bare ASGI (the paced client's floor): p50 "
            f"{floor.p50_ms:.2f} p99 {floor.p99_ms:.2f} max {floor.max_ms:.2f} ms (client late "
            f"p99 {floor.late_p99_ms:.2f}), errors {floor.errors}"
        )
    failed = [key for key, why in unmeasured.items() if why.startswith("FAILED")]
    if warnings or failed:
        print(f"\nNOT a valid run: {len(warnings)} warning(s) above, {len(failed)} row(s) failed")
    elif any(key in by_key for key in SERVICE_ROWS):
        print("\nvalid run: no errors, every 2xx response matched by a redacted record")
    else:
        print("\nvalid run: no errors")


def print_ratios(by_key: dict[str, Measurement]) -> None:
    """The req/s of each service row over each baseline row, then the targets."""
    services = [key for key in SERVICE_ROWS if key in by_key]
    print()
    if services:
        print(
            f"{'req/s, full/baseline':<22}"
            + "".join(f"{ROWS[b].short:>18}" for b in RATIO_BASELINES)
        )
        for service in services:
            cells = []
            for baseline in RATIO_BASELINES:
                value = ratio(by_key, service, baseline)
                digits = 3 if baseline == "bare" else 2  # the bare ratio is small
                cells.append(f"{'-' if value is None else f'{value:.{digits}f}':>18}")
            print(f"{ROWS[service].short:<22}" + "".join(cells))
    else:
        print("no ratios: neither service row (sqlite, postgres) was measured")
    for target in RATIO_TARGETS:
        value = ratio(by_key, target.service, target.baseline)
        name = (
            f"{target.kind}: {ROWS[target.service].short} >= {target.least}x "
            f"{ROWS[target.baseline].short}"
        )
        if value is None:
            missing = [k for k in (target.service, target.baseline) if k not in by_key]
            print(f"{name}: not measured (no {' or '.join(missing)} row)")
            continue
        invalid = (
            " (on an invalid row)"
            if on_invalid_row(by_key, target.service, target.baseline)
            else ""
        )
        print(f"{name}: {value:.2f}x {'MET' if value >= target.least else 'MISSED'}{invalid}")


def write_json(
    path: pathlib.Path,
    selected: list[str],
    measurements: list[Measurement],
    unmeasured: dict[str, str],
    args,
) -> None:
    by_key = {m.key: m for m in measurements}
    figures = {
        "settings": {
            "duration": args.duration,
            "connections": args.connections,
            "wrk_threads": WRK_THREADS,
            "workers": WORKERS,
            "paced_rate": PACED_RATE,
            "paced_seconds": PACED_SECONDS,
            "rows": selected,
            "prism_package": PRISM_PACKAGE,
        },
        "postgres_skipped": args.skipped,
        "unmeasured": unmeasured,
        "apps": [
            {
                "key": m.key,
                "label": m.label,
                "detail": m.detail,
                "path": m.path,
                "startup_s": m.startup_s,
                "probe_status": m.probe_status,
                "throughput": {**dataclasses.asdict(m.throughput), "rate": m.throughput.rate},
                "paced": m.paced
                and {
                    **dataclasses.asdict(m.paced),
                    "rate": m.paced.rate,
                    "errors": m.paced.errors,
                    "p99_target_ms": PACED_P99_TARGET_MS.get(m.key),
                    # None for the bare row's floor: it has no target to meet or miss
                    "met": m.paced.p99_ms <= PACED_P99_TARGET_MS[m.key]
                    if m.key in PACED_P99_TARGET_MS
                    else None,
                },
                "redacted_throughput": m.redacted_throughput,
                "redacted_paced": m.redacted_paced,
                "paced_floors": [dataclasses.asdict(f) for f in m.paced_floors],
                "warnings": m.warnings,
            }
            for m in measurements
        ],
        "ratios": [
            {"service": service, "baseline": baseline, "ratio": ratio(by_key, service, baseline)}
            for service in SERVICE_ROWS
            if service in by_key
            for baseline in RATIO_BASELINES
            if baseline in by_key
        ],
        "targets": [
            {
                **dataclasses.asdict(target),
                "ratio": value,
                "met": None if value is None else value >= target.least,
            }
            for target in RATIO_TARGETS
            for value in [ratio(by_key, target.service, target.baseline)]
        ],
    }
    path.write_text(json.dumps(figures, indent=2) + "\n")


# ---------------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument(
        "--skip-postgres", action="store_true", help="skip the PostgreSQL + Redis run"
    )
    parser.add_argument(
        "--only", metavar="ROWS", help="comma-separated rows to run, of: " + ",".join(ROWS)
    )
    parser.add_argument(
        "--json", type=pathlib.Path, metavar="PATH", help="also write the figures to PATH"
    )
    args = parser.parse_args()
    if args.only is None:
        wanted = set(ROWS)
    else:
        wanted = {name.strip() for name in args.only.split(",") if name.strip()}
        unknown = sorted(wanted - set(ROWS))
        if unknown or not wanted:
            parser.error(
                f"--only: unknown row(s) {', '.join(unknown) or '(none given)'}; "
                f"rows are {','.join(ROWS)}"
            )
    args.rows = [key for key in ROWS if key in wanted]  # always in the table's order
    args.skipped = None
    return args


def missing_requirements(rows: list[str]) -> str | None:
    """What the chosen rows need and this machine lacks, in one line, or None."""
    lacking: dict[str, list[str]] = {}  # module or program -> the rows that need it
    for key in rows:
        row = ROWS[key]
        for module in row.modules:
            if importlib.util.find_spec(module) is None:
                lacking.setdefault(f"Python module {module}", []).append(key)
        for program in ("wrk", *row.programs):
            if shutil.which(program) is None:
                lacking.setdefault(f"program {program}", []).append(key)
    if not lacking:
        return None
    return (
        "missing "
        + "; ".join(
            f"{what} ({INSTALL_HINTS[what.split()[-1]]}; for {','.join(needed_by)})"
            for what, needed_by in lacking.items()
        )
        + "; or leave those rows out with --only"
    )


def main() -> int:
    args = parse_args()
    missing = missing_requirements(args.rows)
    if missing:
        print(f"error: {missing}", file=sys.stderr)
        return 2
    # Terminated: unwind as on Ctrl-C, so that every `finally` stops its server.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if "postgres" in args.rows:
        args.skipped = "--skip-postgres" if args.skip_postgres else prepare_postgres_and_redis()
    measurements: list[Measurement] = []
    unmeasured: dict[str, str] = {}  # row key -> why: skipped or failed
    with tempfile.TemporaryDirectory(prefix="redact-bench-") as tmp:
        workdir = pathlib.Path(tmp)

        def stub(key: str, app: str) -> Callable[[], Measurement]:
            return lambda: measure_stub(
                ROWS[key],
                functools.partial(gunicorn_command, app),
                PATH,
                args,
                workdir / f"{key}.log",
            )

        runners = {
            "bare": stub("bare", "bench.bare_asgi:app"),
            "flask-untuned": stub("flask-untuned", "bench.untuned:app"),
            "async-untuned": stub("async-untuned", "bench.untuned_async:app"),
            "prism": lambda: measure_prism(ROWS["prism"], args, workdir / "prism.log"),
            "sqlite": lambda: measure_service(
                ROWS["sqlite"],
                f"sqlite:///{workdir}/bench.db",
                "memory://",
                args,
                workdir / "sqlite.log",
            ),
            "postgres": lambda: measure_service(
                ROWS["postgres"], PG_URL, REDIS_URL, args, workdir / "postgres.log"
            ),
        }
        try:
            for key in args.rows:
                if key == "postgres" and args.skipped:
                    print(f"skipping {ROWS[key].label}: {args.skipped}")
                    unmeasured[key] = f"skipped: {args.skipped}"
                    continue
                try:
                    measurements.append(runners[key]())
                except BenchError as exc:  # the other rows still tell something
                    print(f"error: {ROWS[key].label}: {exc}", file=sys.stderr)
                    unmeasured[key] = f"FAILED: {str(exc).splitlines()[0]}"
        except KeyboardInterrupt:
            print("interrupted; servers stopped", file=sys.stderr)
            return 130
    print_report(args.rows, measurements, unmeasured, args)
    if args.json:
        write_json(args.json, args.rows, measurements, unmeasured, args)
    failed = any(why.startswith("FAILED") for why in unmeasured.values())
    return 1 if failed or any(m.warnings for m in measurements) else 0


if __name__ == "__main__":
    sys.exit(main())
