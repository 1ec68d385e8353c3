"""Load on the scale-out set-up: several accounts at their rate limit for minutes, then an
overload far beyond capacity, then a light load again.

The service runs as the Procfile runs it (`redact serve --no-jobs --workers 2`) on
PostgreSQL (database redact_bench) with the limiter and the queue in Redis (db 14). Each
account has its own records; every request redacts a record never sent before, so every
204 is real work, and the database is checked against the answers at the end (every 204
matched by a redacted row).

Phases, each open loop: account a's request i is sent at its scheduled time
t0 + (i + a/accounts)/rate whatever the earlier requests are doing, and its latency runs
from that scheduled time, so queueing counts. The client is a small asyncio HTTP/1.1
client on keep-alive connections (it shares the machine's 2 cores with the service).

1. sustained: `--accounts` accounts (default 10) each offer `--rate` requests/s (default
   170, the per-account limit) for `--duration` seconds (default 180). Reported: the
   answers, p50/p99/max latency, each account's admitted rate (2xx/s over the run, and the
   least and most in any whole second after the first), and every worker's RSS, sampled
   every 5 s: the first minute's median against the last minute's.
2. at the limit: one account alone offers `--limit-rate` (default 250/s, over its limit of
   170/s) for `--limit-seconds` (default 20): in no whole second may more than 170 of its
   requests be admitted, and the rest must be 429s.
3. overload: each account offers `--overload-rate` requests/s (default 400: 4,000/s in
   all, several times what 2 cores serve) for `--overload-seconds` (default 15). Every
   answer must be a 204 or a 429/503 problem, none a timeout or a dropped connection.
   The highest 2xx rate of any phase is the service's capacity in this run: the baseline
   the other phases are read against.
4. recovery: each account offers `--recovery-rate` (default 20) for 10 s: all 204 again.

At the end the service's own latency histogram (/metrics) tells, per operation (`shed`
for requests refused at capacity), the time spent inside the service, without the
client's lag.

    python bench/load.py [--accounts 10] [--rate 170] [--duration 180] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import dataclasses
import datetime
import io
import json
import os
import pathlib
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import psycopg2
import redis
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from paced import read_response
from run import (
    PG_ADMIN_DSN,
    PG_URL,
    REDIS_URL,
    SUBJECT_KEY,
    BenchError,
    free_port,
    log_problems,
    open_bench_store,
    prepare_postgres_and_redis,
    stop,
    store_env,
)

from models import MODELS, Account

ROOT = pathlib.Path(__file__).resolve().parent.parent
WORKERS = 2
PATH = "/v1/redact/transaction"
SECRET = "load-secret-0001"
TIMEOUT = 30.0
RECOVERY_SECONDS = 10
MAX_CONNECTIONS_PER_ACCOUNT = 100
MEMORY_SAMPLE_SECONDS = 5
IDLE_SECONDS = 1.0
METRICS_TOKEN = "load-metrics-token"
LIMIT = 170  # the service's default per-account rate limit


def api_key(account: int) -> str:
    return f"load{account:04d}"


def record_id(account: int, number: int) -> str:
    return f"L{account:03d}{number:010d}"


# ------------------------------------------------------------------------------ database


def prepare(accounts: int, per_account: int) -> None:
    """Fresh tables, the accounts, and `per_account` old-enough SMS records each (COPY)."""
    db = open_bench_store(PG_URL).database
    with db.connection_context():
        db.drop_tables(MODELS, safe=True)
        db.create_tables(MODELS)
        for account in range(accounts):
            Account.register(api_key(account), SECRET)
    db.close_all()
    created = (datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=2)).isoformat()
    connection = psycopg2.connect(PG_ADMIN_DSN.replace("dbname=test", "dbname=redact_bench"))
    try:
        with connection, connection.cursor() as cursor:
            for account in range(accounts):
                rows = io.StringIO()
                for number in range(per_account):
                    rows.write(
                        f"{record_id(account, number)}\t{api_key(account)}\tsms\t"
                        f"outbound\t{created}\t447700900001\t447700900002\t"
                        f"load message text\n"
                    )
                rows.seek(0)
                cursor.copy_expert(
                    'COPY "transaction" (id, api_key, product, direction, created_at, sender,'
                    " recipient, body) FROM STDIN",
                    rows,
                )
    finally:
        connection.close()


def count_redacted(accounts: int) -> int:
    connection = psycopg2.connect(PG_ADMIN_DSN.replace("dbname=test", "dbname=redact_bench"))
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                'SELECT count(*) FROM "transaction" WHERE redacted_at IS NOT NULL'
                " AND body = 'REDACTED'"
            )
            return cursor.fetchone()[0]
    finally:
        connection.close()


# ------------------------------------------------------------------------------- service


@contextlib.contextmanager
def service(log_path: pathlib.Path):
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": PG_URL,
        "REDACT_SUBJECT_KEY": SUBJECT_KEY,
        "RATELIMIT_STORAGE_URI": REDIS_URL,
        "REDACT_QUEUE_URL": REDIS_URL,
        "REDACT_METRICS_TOKEN": METRICS_TOKEN,
        **store_env(PG_URL),
    }
    subprocess.run([sys.executable, "-m", "app.cli", "migrate"], cwd=ROOT, env=env, check=True)
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [
                *(sys.executable, "-m", "app.cli", "serve", "--no-jobs"),
                *("--workers", str(WORKERS), "--port", str(port)),
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise BenchError(
                        "the service did not start:\n" + log_problems(log_path)
                    ) from None
                time.sleep(0.2)
        yield server, port
    finally:
        stop(server)


def server_latency(port: int) -> dict[str, dict[str, float]]:
    """From the service's own latency histogram (all phases), by operation: how many
    requests, and the upper bound of the bucket holding the 50th and 99th percentile
    (ms): the time spent inside the service, without the client's lag."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read().decode()
    buckets: dict[str, list[tuple[float, float]]] = collections.defaultdict(list)
    for family in text_string_to_metric_families(text):
        if family.name != "redact_http_request_duration_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                buckets[sample.labels["operation"]].append(
                    (float(sample.labels["le"]), sample.value)
                )
    report = {}
    for operation, counts in buckets.items():
        counts.sort()
        total = counts[-1][1]
        if not total:
            continue

        def bound(share: float, counts=counts, total=total) -> float:
            return next(le for le, count in counts if count >= share * total) * 1000

        report[operation] = {
            "requests": total,
            "p50_ms_at_most": bound(0.5),
            "p99_ms_at_most": bound(0.99),
        }
    return report


def worker_rss(server: subprocess.Popen) -> dict[int, float]:
    """MB resident of each worker process of `redact serve`."""
    children = subprocess.run(
        ["pgrep", "-P", str(server.pid)], capture_output=True, text=True
    ).stdout.split()
    sizes = {}
    for pid in children:
        with contextlib.suppress(OSError):
            for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    sizes[int(pid)] = int(line.split()[1]) / 1024
    return sizes


# -------------------------------------------------------------------------------- client


class AccountClient:
    """One account's keep-alive connections to the service."""

    def __init__(self, port: int, number: int):
        self.port = port
        self.number = number
        token = base64.b64encode(f"{api_key(number)}:{SECRET}".encode()).decode()
        self.head = (
            f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {token}"
            "\r\nContent-Type: application/json\r\nContent-Length: "
        ).encode()
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
        self.open = 0
        self.free = asyncio.Condition()

    async def _connection(self):
        async with self.free:
            while True:
                # As an HTTP client library does: a connection idle for longer than the
                # server keeps one (uvicorn's keep-alive, 5 s) is not reused.
                while self.idle and time.monotonic() - self.idle[0][2] > IDLE_SECONDS:
                    self.idle.pop(0)[1].close()
                    self.open -= 1
                if self.idle or self.open < MAX_CONNECTIONS_PER_ACCOUNT:
                    break
                await self.free.wait()
            if self.idle:
                return self.idle.pop()[:2]
            self.open += 1
        try:
            return await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            await self._lost()
            raise

    async def _lost(self):
        async with self.free:
            self.open -= 1
            self.free.notify()

    async def redact(self, transaction_id: str) -> str:
        """One redaction; its status code, or the name of what went wrong."""
        connection = await self._connection()
        reader, writer = connection
        body = json.dumps({"id": transaction_id, "product": "sms"}).encode()
        try:
            writer.write(self.head + str(len(body)).encode() + b"\r\n\r\n" + body)
            status, close = await asyncio.wait_for(read_response(reader), TIMEOUT)
        except (TimeoutError, OSError, ValueError, IndexError, asyncio.IncompleteReadError) as exc:
            writer.close()
            await self._lost()
            return type(exc).__name__
        if close:
            writer.close()
            await self._lost()
        else:
            async with self.free:
                self.idle.append((reader, writer, time.monotonic()))
                self.free.notify()
        return status

    def close(self):
        for _, writer, _ in self.idle:
            writer.close()


@dataclasses.dataclass
class Phase:
    name: str
    accounts: int
    rate: float
    seconds: float
    outcomes: dict[str, int]
    p50_ms: float
    p99_ms: float
    max_ms: float
    admitted: list[float]  # 2xx/s of each account over the phase
    least_second: int  # the fewest 2xx of one account in one whole second (first skipped)
    most_second: int
    sent: int

    @property
    def ok(self) -> int:
        return sum(n for outcome, n in self.outcomes.items() if outcome.startswith("2"))


async def run_phase(
    name: str, clients: list[AccountClient], rate: float, seconds: float, first: list[int]
) -> Phase:
    """Each client offers `rate`/s for `seconds`, redacting its records from first[a] on
    (advanced); open loop, latency from the scheduled time."""
    loop = asyncio.get_running_loop()
    count = int(rate * seconds)
    accounts = len(clients)
    results: list[tuple[int, int, float, str]] = []  # account, second, latency, outcome

    async def one(client: AccountClient, number: int, scheduled: float):
        outcome = await client.redact(record_id(client.number, number))
        results.append((client.number, int(scheduled - t0), loop.time() - scheduled, outcome))

    t0 = loop.time() + 0.1
    tasks = []
    schedule = sorted(
        (t0 + (i + a / accounts) / rate, a, i) for a in range(accounts) for i in range(count)
    )
    for scheduled, a, i in schedule:
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(clients[a], first[a] + i, scheduled)))
    await asyncio.gather(*tasks)
    for a in range(accounts):
        first[a] += count
    latencies = sorted(latency * 1000 for _, _, latency, _ in results)
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    per_second = collections.Counter(
        (a, s) for a, s, _, outcome in results if outcome.startswith("2")
    )
    whole = [per_second[(a, s)] for a in range(accounts) for s in range(1, int(seconds))]
    admitted = [
        sum(per_second[(a, s)] for s in range(int(seconds) + 1)) / seconds for a in range(accounts)
    ]
    return Phase(
        name=name,
        accounts=accounts,
        rate=rate,
        seconds=seconds,
        outcomes=dict(collections.Counter(o for *_, o in results)),
        p50_ms=cuts[49],
        p99_ms=cuts[98],
        max_ms=latencies[-1],
        admitted=admitted,
        least_second=min(whole, default=0),
        most_second=max(whole, default=0),
        sent=len(results),
    )


async def sample_memory(server, samples: list[tuple[float, dict]], stop_event):
    started = time.monotonic()
    while not stop_event.is_set():
        samples.append((time.monotonic() - started, worker_rss(server)))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop_event.wait(), MEMORY_SAMPLE_SECONDS)


def memory_report(samples: list[tuple[float, dict]], duration: float) -> dict:
    """Per worker: median RSS over the first minute and over the last minute, and each
    minute's median (MB)."""
    window = min(60.0, duration / 3)
    report = {}
    pids = {pid for _, sizes in samples for pid in sizes}
    for pid in sorted(pids):
        early = [s[pid] for t, s in samples if pid in s and t <= window]
        late = [s[pid] for t, s in samples if pid in s and t >= duration - window]
        if early and late:
            minutes = collections.defaultdict(list)
            for t, sizes in samples:
                if pid in sizes:
                    minutes[int(t // 60)].append(sizes[pid])
            report[pid] = {
                "first_mb": round(statistics.median(early), 1),
                "last_mb": round(statistics.median(late), 1),
                "peak_mb": round(max(s[pid] for _, s in samples if pid in s), 1),
                "by_minute_mb": [round(statistics.median(minutes[m])) for m in sorted(minutes)],
            }
    return report


async def load(args, port: int, server) -> dict:
    clients = [AccountClient(port, a) for a in range(args.accounts)]
    first = [0] * args.accounts
    # warm-up: every worker's credential cache and connections (not reported)
    await run_phase("warm-up", clients, 5, 2, first)
    samples: list = []
    stop_event = asyncio.Event()
    sampler = asyncio.create_task(sample_memory(server, samples, stop_event))
    sustained = await run_phase("sustained", clients, args.rate, args.duration, first)
    stop_event.set()
    await sampler
    await asyncio.sleep(2)
    limit = await run_phase("at the limit", clients[:1], args.limit_rate, args.limit_seconds, first)
    await asyncio.sleep(2)
    overload = await run_phase(
        "overload", clients, args.overload_rate, args.overload_seconds, first
    )
    await asyncio.sleep(2)  # let the backlog drain
    recovery = await run_phase("recovery", clients, args.recovery_rate, RECOVERY_SECONDS, first)
    for client in clients:
        client.close()
    return {
        "phases": [sustained, limit, overload, recovery],
        "memory": memory_report(samples, args.duration),
    }


# -------------------------------------------------------------------------------- report


def print_phase(phase: Phase, capacity: float | None) -> None:
    offered = phase.accounts * phase.rate
    print(
        f"\n{phase.name}: {phase.accounts} accounts x {phase.rate:g}/s = {offered:g}/s "
        f"offered for {phase.seconds:g} s ({phase.sent} requests)"
    )
    print(f"  answers: {dict(sorted(phase.outcomes.items()))}")
    print(
        f"  served (2xx): {phase.ok / phase.seconds:.0f}/s"
        + (f" = {phase.ok / phase.seconds / capacity:.2f} of capacity" if capacity else "")
    )
    print(
        f"  latency from the scheduled time: p50 {phase.p50_ms:.1f} ms, "
        f"p99 {phase.p99_ms:.1f} ms, max {phase.max_ms:.0f} ms"
    )
    print(
        f"  per account admitted: {min(phase.admitted):.1f}-{max(phase.admitted):.1f}/s "
        f"(offered {phase.rate:g}); in any whole second {phase.least_second}-"
        f"{phase.most_second}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10)
    parser.add_argument("--rate", type=float, default=170)
    parser.add_argument("--duration", type=float, default=180)
    parser.add_argument("--limit-rate", type=float, default=250)
    parser.add_argument("--limit-seconds", type=float, default=20)
    parser.add_argument("--overload-rate", type=float, default=400)
    parser.add_argument("--overload-seconds", type=float, default=15)
    parser.add_argument("--recovery-rate", type=float, default=20)
    parser.add_argument("--json", type=pathlib.Path)
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))

    why_not = prepare_postgres_and_redis()
    if why_not:
        print(f"error: {why_not}", file=sys.stderr)
        return 1
    per_account = (
        int(
            5 * 2
            + args.rate * args.duration
            + args.limit_rate * args.limit_seconds
            + args.overload_rate * args.overload_seconds
            + args.recovery_rate * RECOVERY_SECONDS
        )
        + 10
    )
    started = time.monotonic()
    prepare(args.accounts, per_account)
    print(f"prepared {args.accounts} x {per_account} records in {time.monotonic() - started:.0f} s")
    redis.Redis.from_url(REDIS_URL).flushdb()
    log_path = pathlib.Path(tempfile.mkdtemp(prefix="redact-load-")) / "service.log"
    with service(log_path) as (server, port):
        result = asyncio.run(load(args, port, server))
        result["inside"] = server_latency(port)
    _sustained, limit, _overload, recovery = result["phases"]
    # The most the service served in this run: the baseline the other figures are read
    # against (the overload's own rate is lower when the client, on the same cores, lags).
    capacity = max(phase.ok / phase.seconds for phase in result["phases"])
    for phase in result["phases"]:
        print_phase(phase, capacity)
    print("\nworker memory (RSS, MB), first minute -> last minute of the sustained phase:")
    for pid, sizes in result["memory"].items():
        print(
            f"  worker {pid}: {sizes['first_mb']} -> {sizes['last_mb']} "
            f"(peak {sizes['peak_mb']}; by minute {sizes['by_minute_mb']})"
        )
    print("\nin the service (its latency histogram, all phases; bucket bounds):")
    for operation, figures in sorted(result["inside"].items()):
        print(
            f"  {operation}: {figures['requests']:.0f} requests, p50 <= "
            f"{figures['p50_ms_at_most']:g} ms, p99 <= {figures['p99_ms_at_most']:g} ms"
        )
    redacted = count_redacted(args.accounts)
    answered = sum(phase.ok for phase in result["phases"]) + 5 * 2 * args.accounts
    print(
        f"\nredacted rows {redacted}, 2xx answers {answered} (warm-up included): "
        f"{'match' if redacted == answered else 'MISMATCH'}"
    )
    unexpected = {
        o: n
        for phase in result["phases"]
        for o, n in phase.outcomes.items()
        if o not in ("204", "429", "503")
    }
    problems = log_problems(log_path)
    if problems:
        print(f"\nservice log, besides INFO:\n{problems}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "args": vars(args) | {"json": str(args.json)},
                    "capacity_per_s": capacity,
                    "phases": [dataclasses.asdict(p) for p in result["phases"]],
                    "memory": result["memory"],
                    "inside": result["inside"],
                    "redacted": redacted,
                    "answered_2xx": answered,
                },
                indent=2,
                default=str,
            )
        )
    failed = []
    if unexpected:
        failed.append(f"answers other than 204/429/503: {unexpected}")
    if redacted != answered:
        failed.append("redacted rows do not match the 2xx answers")
    if set(recovery.outcomes) != {"204"}:
        failed.append(f"recovery answered {recovery.outcomes}")
    if limit.most_second > LIMIT:
        failed.append(f"one account was admitted {limit.most_second} in one second")
    for line in failed:
        print(f"FAILED: {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
