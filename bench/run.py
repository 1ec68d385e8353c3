"""Throughput and latency of the Redact service, against the floor of its HTTP stack.

Every app is served the way the Procfile serves the service (gunicorn, 2 uvicorn workers,
loopback) and loaded with wrk (2 threads, --connections, --duration, after an uncounted
2 s warm-up) sending the same request, `POST /v1/redact/transaction` with basic auth:

1. a bare ASGI app that parses the JSON body: the floor of the HTTP stack;
2. an untuned Connexion app with the same spec and a handler that does nothing: the
   framework as it comes;
3. the real service on SQLite (in-memory limiter), redacting a fresh record per request;
4. the same on PostgreSQL with the limiter in Redis (skipped if unreachable).

The service runs with REDACT_RATE_LIMIT so high that the limiter counts every request
but never refuses one. req/s is wrk's count of all responses; any non-2xx response or
socket error makes the run invalid, and the report says so. The ratios 3/1 and 3/2 (4/1
and 4/2 for PostgreSQL) tell what the service costs over the stack and whether its tuning
beats the default framework (target 3/2 >= 1).

For 3 and 4, an open-loop run (Python, httpx, after a 2 s warm-up) then offers 170
requests/s, the default per-account rate limit, for 10 s: request i is sent at t0 + i/170
whatever the earlier ones are doing, and its latency runs from that scheduled time, so
queueing is counted (the client shares the machine's 2 cores); the target is p99 < 20 ms.
After each of these runs the records sent are counted in the database: at least as many
must be redacted as 2xx responses came back, which proves the requests did real work.

    python bench/run.py [--duration 10] [--connections 32] [--skip-postgres] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import dataclasses
import datetime
import json
import math
import os
import pathlib
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import httpx
import psycopg2
import redis

from models import MODELS, REDACTED, Account, Transaction, open_database

BENCH_DIR = pathlib.Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
WRK_SCRIPT = BENCH_DIR / "redact.lua"

API_KEY, API_SECRET = "bench001", "bench-secret-1"
AUTH_HEADER = "Basic " + base64.b64encode(f"{API_KEY}:{API_SECRET}".encode()).decode()
PATH = "/v1/redact/transaction"
BODY = "benchmark message text"

WORKERS = 2
WRK_THREADS = 2
WARMUP_SECONDS = 2
MAX_RATE = 6000  # req/s assumed when reserving fresh ids for a wrk run
INSERT_CHUNK = 1000
START_TIMEOUT = 60

PACED_RATE = 170
PACED_SECONDS = 10
PACED_WARMUP_SECONDS = 2
PACED_P99_TARGET_MS = 20
RATIO_TARGET = 1.0

PG_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=3"
PG_DATABASE = "redact_bench"
PG_URL = f"postgresql://postgres@127.0.0.1:5432/{PG_DATABASE}"
REDIS_URL = "redis://127.0.0.1:6379/14"

# The service under load: the limiter counts but never refuses.
SUBJECT_KEY = "bench-subject-key-000000000000"
SERVICE_ENV = {"REDACT_RATE_LIMIT": "1000000/second", "REDACT_SUBJECT_KEY": SUBJECT_KEY}


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

    @classmethod
    def reserve(cls, allocator: IdAllocator, duration: float) -> "RedactPlan":
        return cls(
            warmup=wrk_range(allocator, WARMUP_SECONDS),
            throughput=wrk_range(allocator, duration),
            paced_warmup=allocator.take(PACED_RATE * PACED_WARMUP_SECONDS),
            paced=allocator.take(PACED_RATE * PACED_SECONDS),
        )


# ------------------------------------------------------------------------------ database

def prepare_database(url: str, record_count: int) -> None:
    """Fresh tables, the bench account and `record_count` unredacted, old-enough SMS."""
    db = open_database(url, subject_key=SUBJECT_KEY.encode())
    created_at = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=2)
    with db.connection_context():
        db.drop_tables(MODELS, safe=True)
        db.create_tables(MODELS)
        Account.register(API_KEY, API_SECRET)
        for start in range(0, record_count, INSERT_CHUNK):
            numbers = range(start, min(start + INSERT_CHUNK, record_count))
            with db.atomic():
                Transaction.insert_many(
                    [_record(n, created_at) for n in numbers]
                ).execute()
    db.close_all()


def _record(number: int, created_at: datetime.datetime) -> dict:
    return {
        "id": record_id(number), "account": API_KEY, "product": "sms",
        "direction": "outbound", "created_at": created_at, "sender": "447700900001",
        "recipient": "447700900002", "body": BODY, "details": None, "redacted_at": None,
    }


def count_redacted(url: str, ids: IdRange) -> int:
    """How many records of `ids` are marked redacted and hold no message text any more."""
    db = open_database(url, subject_key=SUBJECT_KEY.encode())
    with db.connection_context():
        count = (
            Transaction.select()
            .where(
                Transaction.id.between(record_id(ids.first),
                                       record_id(ids.first + ids.count - 1))
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
    try:
        connection = psycopg2.connect(PG_ADMIN_DSN)
    except psycopg2.Error as exc:
        return f"PostgreSQL unreachable: {str(exc).strip().splitlines()[0]}"
    try:
        connection.autocommit = True  # CREATE DATABASE refuses to run in a transaction
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (PG_DATABASE,))
            if cursor.fetchone() is None:
                cursor.execute(f"CREATE DATABASE {PG_DATABASE}")
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
    """The server log without gunicorn's INFO lines and traceback bodies, identical lines
    (trace ids aside) counted: what went wrong, in a few lines."""
    lines = collections.Counter(
        re.sub(r"\b[0-9a-f]{32}\b", "<trace>", line)
        for line in log_path.read_text(errors="replace").splitlines()
        if line and not line[0].isspace() and "] [INFO] " not in line
        and '"level": "info"' not in line and line != "Traceback (most recent call last):"
    )
    return "\n".join(f"{count:>7} x {line}" for line, count in lines.most_common(most))


@contextlib.contextmanager
def serve(app: str, env: dict[str, str], log_path: pathlib.Path):
    """Run `app` as the Procfile does and yield its base URL once it answers; always stop
    the whole gunicorn process group on leaving."""
    port = free_port()
    command = [
        sys.executable, "-m", "gunicorn", app, "--workers", str(WORKERS),
        "--worker-class", "uvicorn_worker.UvicornWorker", "--bind", f"127.0.0.1:{port}",
    ]
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            command, cwd=ROOT, env={**os.environ, **env}, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        base_url = f"http://127.0.0.1:{port}"
        wait_until_ready(server, base_url, log_path)
        yield base_url
    finally:
        stop(server)


def wait_until_ready(server: subprocess.Popen, base_url: str, log_path: pathlib.Path):
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise BenchError(f"the server exited with code {server.returncode}:\n"
                             + log_tail(log_path))
        try:
            httpx.get(base_url + "/", timeout=1)  # any response means a worker is up
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise BenchError(f"the server did not answer within {START_TIMEOUT} s:\n"
                     + log_tail(log_path))


def stop(server: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


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


def run_wrk(base_url: str, ids: IdRange, seconds: float, connections: int,
            log_path: pathlib.Path) -> WrkResult:
    """One wrk run whose threads share out `ids`, one fresh id per request."""
    per_thread = ids.count // WRK_THREADS
    env = {**os.environ, "BENCH_AUTH": AUTH_HEADER, "BENCH_FIRST": str(ids.first),
           "BENCH_PER_THREAD": str(per_thread)}
    command = ["wrk", f"-t{WRK_THREADS}", f"-c{connections}", f"-d{seconds}s", "--latency",
               "-s", str(WRK_SCRIPT), base_url + PATH]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    with log_path.open("a") as log:
        log.write(f"$ {' '.join(command)}\n{done.stdout}{done.stderr}\n")
    lines = [line for line in done.stdout.splitlines() if line.startswith("BENCH_RESULT ")]
    if done.returncode != 0 or not lines:
        raise BenchError(f"wrk failed (exit {done.returncode}):\n{done.stdout}{done.stderr}")
    raw = json.loads(lines[0].removeprefix("BENCH_RESULT "))
    return WrkResult(
        requests=raw["requests"], seconds=raw["duration_us"] / 1e6, non_2xx=raw["non_2xx"],
        socket_errors=raw["socket_errors"], p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        ids_exhausted=raw["most_ids_per_thread"] > per_thread,
    )


def measure_throughput(base_url: str, warmup: IdRange, measured: IdRange,
                       args: argparse.Namespace, log_path: pathlib.Path) -> WrkResult:
    run_wrk(base_url, warmup, WARMUP_SECONDS, args.connections, log_path)
    return run_wrk(base_url, measured, args.duration, args.connections, log_path)


# ---------------------------------------------------------------------------- paced load

@dataclasses.dataclass
class PacedResult:
    sent: int
    seconds: float
    outcomes: dict[str, int]  # by status code or exception name
    p50_ms: float
    p99_ms: float
    max_ms: float

    @property
    def rate(self) -> float:
        return self.sent / self.seconds

    @property
    def errors(self) -> int:
        return sum(n for outcome, n in self.outcomes.items() if not outcome.startswith("2"))

    @property
    def successes(self) -> int:
        return self.sent - self.errors


async def send_paced(client: httpx.AsyncClient, url: str, ids: list[str],
                     rate: float) -> PacedResult:
    """Open loop: request i starts at t0 + i/rate whatever the earlier ones are doing;
    its latency runs from that scheduled time to its response."""
    loop = asyncio.get_running_loop()

    async def one(record: str, scheduled: float) -> tuple[float, str]:
        try:
            response = await client.post(
                url, json={"id": record, "product": "sms", "type": "outbound"})
            outcome = str(response.status_code)
        except httpx.HTTPError as exc:
            outcome = type(exc).__name__
        return loop.time() - scheduled, outcome

    t0 = loop.time() + 0.05
    tasks = []
    for i, record in enumerate(ids):
        scheduled = t0 + i / rate
        await asyncio.sleep(max(0.0, scheduled - loop.time()))
        tasks.append(asyncio.create_task(one(record, scheduled)))
    outcomes = await asyncio.gather(*tasks)
    elapsed = loop.time() - t0
    latencies = sorted(latency * 1000 for latency, _ in outcomes)
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return PacedResult(
        sent=len(outcomes), seconds=elapsed,
        outcomes=dict(collections.Counter(outcome for _, outcome in outcomes)),
        p50_ms=cuts[49], p99_ms=cuts[98], max_ms=latencies[-1],
    )


async def measure_paced(base_url: str, warmup: IdRange, measured: IdRange) -> PacedResult:
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(auth=(API_KEY, API_SECRET), limits=limits,
                                 timeout=10) as client:
        await send_paced(client, base_url + PATH, warmup.ids(), PACED_RATE)
        return await send_paced(client, base_url + PATH, measured.ids(), PACED_RATE)


# ---------------------------------------------------------------------------- the phases

@dataclasses.dataclass
class Measurement:
    label: str
    throughput: WrkResult
    paced: PacedResult | None = None
    redacted_throughput: int | None = None
    redacted_paced: int | None = None
    warnings: list[str] = dataclasses.field(default_factory=list)


def measure_stub(label: str, app: str, args, log_path: pathlib.Path) -> Measurement:
    """Throughput of an app that redacts nothing (the ids need not exist)."""
    print(f"measuring {label} ...", flush=True)
    allocator = IdAllocator()
    warmup = wrk_range(allocator, WARMUP_SECONDS)
    measured = wrk_range(allocator, args.duration)
    with serve(app, {}, log_path) as base_url:
        result = measure_throughput(base_url, warmup, measured, args, log_path)
    measurement = Measurement(label, result)
    check_throughput(measurement)
    note_log_problems(measurement, log_path)
    return measurement


def measure_service(label: str, database_url: str, storage_uri: str, args,
                    log_path: pathlib.Path) -> Measurement:
    """Throughput and paced latency of the real service, each request a real redaction."""
    print(f"measuring {label} ...", flush=True)
    allocator = IdAllocator()
    plan = RedactPlan.reserve(allocator, args.duration)
    prepare_database(database_url, allocator.used)
    env = {**SERVICE_ENV, "DATABASE_URL": database_url, "RATELIMIT_STORAGE_URI": storage_uri}
    with serve("app.asgi:app", env, log_path) as base_url:
        result = measure_throughput(base_url, plan.warmup, plan.throughput, args, log_path)
        paced = asyncio.run(measure_paced(base_url, plan.paced_warmup, plan.paced))
    measurement = Measurement(
        label, result, paced,
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
            f"{socket_errors}: the throughput run is NOT valid")


def check_service(measurement: Measurement) -> None:
    if measurement.throughput.ids_exhausted:
        measurement.warnings.append(
            f"{measurement.label}: a wrk thread sent more than its {MAX_RATE} req/s share "
            "of fresh ids, so some requests hit redacted or missing records; raise MAX_RATE")
    checks = (("throughput", measurement.redacted_throughput, measurement.throughput),
              ("paced", measurement.redacted_paced, measurement.paced))
    for phase, redacted, result in checks:
        if redacted < result.successes:
            measurement.warnings.append(
                f"{measurement.label}: only {redacted} records redacted for "
                f"{result.successes} 2xx responses of the {phase} run")
    if measurement.paced.errors:
        measurement.warnings.append(
            f"{measurement.label}: paced run outcomes {measurement.paced.outcomes}")


def note_log_problems(measurement: Measurement, log_path: pathlib.Path) -> None:
    if measurement.warnings:
        measurement.warnings.append(
            f"{measurement.label}: server log, apart from INFO lines and traceback "
            f"bodies:\n{log_problems(log_path)}")


# -------------------------------------------------------------------------------- report

def print_report(measurements: list[Measurement], skipped: str | None, args) -> None:
    warnings = [w for m in measurements for w in m.warnings]
    for warning in warnings:
        print(f"\nWARNING: {warning}")
    print(f"\nwrk -t{WRK_THREADS} -c{args.connections} -d{args.duration}s --latency, "
          f"gunicorn {WORKERS} uvicorn workers, loopback\n")
    print(f"{'app':<30}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}"
          f"{'sock err':>10}{'redacted':>10}")
    for m in measurements:
        t = m.throughput
        redacted = "" if m.redacted_throughput is None else m.redacted_throughput
        print(f"{m.label:<30}{t.rate:>9.0f}{t.p50_ms:>9.2f}{t.p99_ms:>9.2f}{t.non_2xx:>9}"
              f"{sum(t.socket_errors.values()):>10}{redacted:>10}")
    if skipped:
        print(f"{'4 redact (PostgreSQL+Redis)':<30} skipped: {skipped}")
    print()
    bare, untuned, *services = measurements
    for service in services:
        n = service.label.split()[0]
        to_untuned = service.throughput.rate / untuned.throughput.rate
        print(f"{service.label:<30} ratio {n}/1 = "
              f"{service.throughput.rate / bare.throughput.rate:.3f}   ratio {n}/2 = "
              f"{to_untuned:.2f}   (target {n}/2 >= {RATIO_TARGET}: "
              f"{'met' if to_untuned >= RATIO_TARGET else 'MISSED'})")
    for service in services:
        p = service.paced
        print(f"paced {PACED_RATE} req/s {service.label}: achieved {p.rate:.1f} req/s, "
              f"p50 {p.p50_ms:.2f} p99 {p.p99_ms:.2f} max {p.max_ms:.2f} ms, errors "
              f"{p.errors}, redacted {service.redacted_paced}/{p.sent} "
              f"(target p99 < {PACED_P99_TARGET_MS} ms: "
              f"{'met' if p.p99_ms < PACED_P99_TARGET_MS else 'MISSED'})")
    if warnings:
        print(f"\nNOT a valid run: {len(warnings)} warning(s) above")
    else:
        print("\nvalid run: no errors, every 2xx response matched by a redacted record")


def write_json(path: pathlib.Path, measurements: list[Measurement], skipped: str | None,
               args) -> None:
    figures = {
        "settings": {"duration": args.duration, "connections": args.connections,
                     "wrk_threads": WRK_THREADS, "workers": WORKERS,
                     "paced_rate": PACED_RATE, "paced_seconds": PACED_SECONDS},
        "postgres_skipped": skipped,
        "apps": [
            {"label": m.label,
             "throughput": {**dataclasses.asdict(m.throughput), "rate": m.throughput.rate},
             "paced": m.paced and {**dataclasses.asdict(m.paced), "rate": m.paced.rate,
                                   "errors": m.paced.errors},
             "redacted_throughput": m.redacted_throughput,
             "redacted_paced": m.redacted_paced,
             "warnings": m.warnings}
            for m in measurements
        ],
    }
    path.write_text(json.dumps(figures, indent=2) + "\n")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--skip-postgres", action="store_true",
                        help="skip the PostgreSQL + Redis run")
    parser.add_argument("--json", type=pathlib.Path, metavar="PATH",
                        help="also write the figures to PATH")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    # Terminated: unwind as on Ctrl-C, so that every `finally` stops its server.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    skipped = "--skip-postgres" if args.skip_postgres else prepare_postgres_and_redis()
    with tempfile.TemporaryDirectory(prefix="redact-bench-") as tmp:
        workdir = pathlib.Path(tmp)
        try:
            measurements = [
                measure_stub("1 bare ASGI", "bench.bare_asgi:app", args,
                             workdir / "bare.log"),
                measure_stub("2 untuned Connexion", "bench.untuned:app", args,
                             workdir / "untuned.log"),
                measure_service("3 redact (SQLite)", f"sqlite:///{workdir}/bench.db",
                                "memory://", args, workdir / "sqlite.log"),
            ]
            if skipped:
                print(f"skipping 4 redact (PostgreSQL+Redis): {skipped}")
            else:
                measurements.append(measure_service(
                    "4 redact (PostgreSQL+Redis)", PG_URL, REDIS_URL, args,
                    workdir / "postgres.log"))
        except BenchError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("interrupted; servers stopped", file=sys.stderr)
            return 130
    print_report(measurements, skipped, args)
    if args.json:
        write_json(args.json, measurements, skipped, args)
    return 1 if any(m.warnings for m in measurements) else 0


if __name__ == "__main__":
    sys.exit(main())
