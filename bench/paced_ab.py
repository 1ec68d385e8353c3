"""The latency at the contract's rate (170 redactions/s on one account) of this checkout and,
as the baseline in the same run, another checkout of the service (e.g. `git worktree add
/tmp/base HEAD~1`), on SQLite and on PostgreSQL with the limiter in Redis.

Each round serves each checkout as bench/run.py's service rows do (`redact serve --no-jobs
--workers 2`, fresh sealed records), offers it 170 requests/s open-loop with
bench/paced.py (a 2 s warm-up, then --seconds), and prints p50, p99 and max, from each
request's scheduled time to its answer. Checkouts alternate within a round, so that both
meet the same machine; p99 over a minute rests on a few dozen requests, so compare the
rounds, not one run.

    python bench/paced_ab.py --baseline PATH [--rounds 3] [--seconds 30]
                             [--stores sqlite,postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pathlib
import statistics
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import run as bench  # noqa: E402


def measure(checkout: pathlib.Path, url: str, storage: str, seconds: int, log: pathlib.Path):
    """One paced run of `checkout` on the store at `url`: its PacedResult."""
    allocator = bench.IdAllocator()
    warmup = allocator.take(bench.PACED_RATE * bench.PACED_WARMUP_SECONDS)
    measured = allocator.take(bench.PACED_RATE * seconds)
    bench.prepare_database(url, allocator.used)
    env = {**bench.SERVICE_ENV, **bench.store_env(url)}
    env.update({"DATABASE_URL": url, "RATELIMIT_STORAGE_URI": storage})
    port = bench.free_port()
    with bench.serve(bench.service_command(port), port, env, log, cwd=checkout) as served:
        result = asyncio.run(bench.measure_paced(served.base_url, warmup, measured))
    if result.errors or result.successes != len(measured.ids()):
        raise bench.BenchError(f"{checkout}: not every request was answered 2xx: not valid")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=pathlib.Path, required=True, help="a checkout")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=30, help="seconds per paced run")
    parser.add_argument("--stores", default="sqlite,postgres", help="of: sqlite,postgres")
    args = parser.parse_args()
    wanted = set(args.stores.split(","))
    if not wanted or wanted - {"sqlite", "postgres"}:
        parser.error("--stores: a comma-separated list of sqlite and postgres")
    baseline = args.baseline.resolve()
    if not (baseline / "app" / "cli").is_dir():
        print(f"error: {baseline} is not a checkout of the service", file=sys.stderr)
        return 2
    stores = [("SQLite", None, "memory://")] if "sqlite" in wanted else []
    if "postgres" in wanted:
        why_not = bench.prepare_postgres_and_redis()
        if why_not:
            print(f"error: {why_not}", file=sys.stderr)
            return 2
        stores.append(("PostgreSQL", bench.PG_URL, bench.REDIS_URL))
    log = pathlib.Path(f"/tmp/redact-bench-paced-{os.getpid()}.log")
    print(f"2 workers, {bench.PACED_RATE} requests/s for {args.seconds} s; server log: {log}")
    print(f"{'round':>5} {'store':<10} {'checkout':<9} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}")
    p99s: dict[tuple[str, str], list[float]] = {}
    for number in range(1, args.rounds + 1):
        for name, url, storage in stores:
            for label, checkout in (("baseline", baseline), ("this", ROOT)):
                with tempfile.TemporaryDirectory() as scratch:
                    store_url = url or f"sqlite:///{scratch}/bench.db"
                    result = measure(checkout, store_url, storage, args.seconds, log)
                p99s.setdefault((name, label), []).append(result.p99_ms)
                print(
                    f"{number:>5} {name:<10} {label:<9} {result.p50_ms:>7.2f} "
                    f"{result.p99_ms:>7.2f} {result.max_ms:>7.1f}",
                    flush=True,
                )
                time.sleep(1)
    for name, _, _ in stores:
        this, base = p99s[(name, "this")], p99s[(name, "baseline")]
        print(
            f"{name}: median p99 {statistics.median(this):.2f} ms (this) against "
            f"{statistics.median(base):.2f} ms (baseline), over {args.rounds} round(s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
