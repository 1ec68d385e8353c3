"""Where a redaction's time goes on PostgreSQL, for this checkout and, as the baseline in
the same run, another checkout of the service (e.g. `git worktree add /tmp/base HEAD~1`).

Each round serves each checkout as bench/run.py's postgres row does (`redact serve
--no-jobs --workers 2`, the limiter in Redis, fresh sealed records), loads it with wrk
(--connections, a fresh record each request) after a warm-up, and prints per run:

  redactions/s   wrk's count over its run (every answer must be a 2xx);
  busy           the machine's 2 cores, from /proc/stat;
  service, PostgreSQL, Redis
                 CPU a redaction of the service's processes, of the bench databases'
                 server processes and of Redis, in microseconds;
  txn/redaction  transactions a redaction costs each database (pg_stat_database);
  batch, held ms the group commit's mean batch and the time a batch holds its
                 transaction open (its metrics, warm-up included).

Checkouts alternate within a round, so that both meet the same machine.

    python bench/postgres.py --baseline PATH [--rounds 3] [--duration 10] [--connections 32]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import run as bench  # noqa: E402

DATABASES = (bench.PG_DATABASE, bench.PG_KEYS_DATABASE)
METRICS_TOKEN = "bench-metrics"


def cpu_seconds(checkout: pathlib.Path) -> dict[str, float]:
    """CPU seconds so far of the service (processes working in `checkout`), the bench
    databases' server processes and Redis."""
    ticks = os.sysconf("SC_CLK_TCK")
    totals = dict.fromkeys(("service", "postgres", "redis"), 0.0)
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
            command = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        seconds = (int(fields[11]) + int(fields[12])) / ticks
        if command.startswith(b"postgres:") and bench.PG_DATABASE.encode() in command:
            totals["postgres"] += seconds
        elif name.startswith("redis-server"):
            totals["redis"] += seconds
        elif b"python" in command and cwd == str(checkout) and int(pid) != os.getpid():
            totals["service"] += seconds
    return totals


def busy_ticks() -> tuple[int, int]:
    values = list(map(int, pathlib.Path("/proc/stat").read_text().split("\n")[0].split()[1:]))
    return sum(values), values[3] + values[4]  # all, idle and waiting for I/O


def transactions() -> dict[str, int]:
    import psycopg2

    with psycopg2.connect(bench.PG_ADMIN_DSN) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT datname, xact_commit FROM pg_stat_database WHERE datname = ANY(%s)",
            (list(DATABASES),),
        )
        found = dict(cursor.fetchall())
    connection.close()
    return found


def commit_metrics(base_url: str) -> dict[str, float]:
    request = urllib.request.Request(
        base_url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    wanted = ("redact_commit_batch_size_", "redact_commit_held_seconds_")
    return {
        name: float(value)
        for name, value in (line.split(" ", 1) for line in text.splitlines())
        if name.startswith(wanted) and name.endswith(("_sum", "_count"))
    }


def measure(checkout: pathlib.Path, args, log: pathlib.Path) -> dict:
    allocator = bench.IdAllocator()
    warmup = bench.wrk_range(allocator, bench.WARMUP_SECONDS)
    measured = bench.wrk_range(allocator, args.duration)
    bench.prepare_database(bench.PG_URL, allocator.used)
    env = {
        **bench.SERVICE_ENV,
        **bench.store_env(bench.PG_URL),
        "DATABASE_URL": bench.PG_URL,
        "RATELIMIT_STORAGE_URI": bench.REDIS_URL,
        "REDACT_METRICS_TOKEN": METRICS_TOKEN,
    }
    port = bench.free_port()
    with bench.serve(bench.service_command(port), port, env, log, cwd=checkout) as served:
        url = served.base_url + bench.PATH
        bench.run_wrk(url, warmup, bench.WARMUP_SECONDS, args.connections, log)
        cpu, ticks, txns = cpu_seconds(checkout), busy_ticks(), transactions()
        result = bench.run_wrk(url, measured, args.duration, args.connections, log)
        cpu_after, ticks_after, txns_after = cpu_seconds(checkout), busy_ticks(), transactions()
        commits = commit_metrics(served.base_url)
    if result.failures:
        raise bench.BenchError(f"{checkout}: {result.non_2xx} non-2xx answers: not valid")
    all_ticks, idle = (after - before for after, before in zip(ticks_after, ticks, strict=True))
    per = 1e6 / result.requests
    batches = commits["redact_commit_batch_size_count"]
    return {
        "rate": result.rate,
        "busy": 100 * (all_ticks - idle) / all_ticks,
        **{kind: (cpu_after[kind] - cpu[kind]) * per for kind in cpu},
        **{db: (txns_after.get(db, 0) - txns.get(db, 0)) / result.requests for db in DATABASES},
        "batch": commits["redact_commit_batch_size_sum"] / batches,
        "held": 1000 * commits["redact_commit_held_seconds_sum"] / batches,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=pathlib.Path, required=True, help="a checkout")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    baseline = args.baseline.resolve()
    if not (baseline / "app" / "cli").is_dir():
        print(f"error: {baseline} is not a checkout of the service", file=sys.stderr)
        return 2
    why_not = bench.prepare_postgres_and_redis()
    if why_not:
        print(f"error: {why_not}", file=sys.stderr)
        return 2
    log = pathlib.Path(f"/tmp/redact-bench-postgres-{os.getpid()}.log")
    print(f"2 workers, wrk -c{args.connections} -d{args.duration}s; server log: {log}")
    print(
        f"{'round':>5} {'checkout':<9} {'redactions/s':>12} {'busy %':>7} {'service us':>10} "
        f"{'PG us':>6} {'Redis us':>8} {'txn data':>8} {'txn keys':>8} {'batch':>5} "
        f"{'held ms':>7}"
    )
    rates: dict[str, list[float]] = {"baseline": [], "this": []}
    for number in range(1, args.rounds + 1):
        for label, checkout in (("baseline", baseline), ("this", ROOT)):
            row = measure(checkout, args, log)
            rates[label].append(row["rate"])
            print(
                f"{number:>5} {label:<9} {row['rate']:>12,.0f} {row['busy']:>7.1f} "
                f"{row['service']:>10.0f} {row['postgres']:>6.0f} {row['redis']:>8.0f} "
                f"{row[DATABASES[0]]:>8.3f} {row[DATABASES[1]]:>8.3f} {row['batch']:>5.1f} "
                f"{row['held']:>7.2f}",
                flush=True,
            )
            time.sleep(1)
    ratio = sum(rates["this"]) / sum(rates["baseline"])
    print(f"this/baseline redactions/s over {args.rounds} round(s): {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
