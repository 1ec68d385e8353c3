"""What the account limit costs a request, beside `limits`' own storages, in one run.

`python bench/limiter.py [--requests 20000] [--accounts 50] [--redis URL]` counts requests as the
account gate does (app/http/gate.py: the moving window's `hit`, then `get_window_stats`
for the RateLimit headers) at the default limit, 170/second, over enough accounts that none
reaches it, paced a request every 0.2 ms (so the window's bookkeeping runs as it does under
load), through:

  limits memory://   `limits`' MemoryStorage, which drops expired entries on a timer thread
                     it starts again 10 ms after the last one ended;
  LocalMovingWindow  app/http/moving_window.py, the storage `memory://` uses here.

Each is measured twice: alone, and with a thread spinning in Python beside it (what a job
running in the same process is to the event loop). It prints the mean and worst time of
one request's count, and how many threads the storage started.

With `--redis URL` (a database it may empty, e.g. redis://127.0.0.1:6379/11) it also
counts as the scale-out gate does, from one event loop, one request after another:

  limits Redis       `limits`' asyncio moving window on Redis: `hit`, then
                     `get_window_stats`, a script call each;
  RedisMovingWindow  app/http/redis_window.py: both in one script call.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import threading
import time

import limits
import limits.aio.strategies
import redis.asyncio
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from app.http.moving_window import LocalMovingWindow
from app.http.redis_window import RedisMovingWindow

PACE_SECONDS = 0.0002
LIMIT = "170/second"  # the service's default; spread over the accounts, none reaches it


def summary(took: list[float], threads: int) -> dict:
    """The mean, p99 and worst of the times `took` (seconds), and the threads started."""
    return {
        "mean_us": statistics.fmean(took) * 1e6,
        "p99_us": statistics.quantiles(took, n=100)[98] * 1e6,
        "max_ms": max(took) * 1e3,
        "threads": threads,
    }


def print_row(name: str, beside: str, row: dict) -> None:
    print(
        f"{name:<22}{beside:<16}{row['mean_us']:>9.1f}{row['p99_us']:>9.1f}"
        f"{row['max_ms']:>9.2f}{row['threads']:>9,}"
    )


def measure(storage, requests: int, accounts: int, busy: bool) -> dict:
    limiter = MovingWindowRateLimiter(storage)
    item = limits.parse(LIMIT)
    started = threading.Timer.start
    timers = 0

    def counting_start(timer):
        nonlocal timers
        timers += 1
        started(timer)

    spinning = threading.Event()

    def spin():
        while not spinning.is_set():
            sum(range(200))

    spinner = threading.Thread(target=spin, daemon=True)
    if busy:
        spinner.start()
    threading.Timer.start = counting_start  # type: ignore[method-assign]
    took = []
    try:
        for n in range(requests):
            key = f"acct{n % accounts:04d}"
            begin = time.perf_counter()
            assert limiter.hit(item, "account", key)
            limiter.get_window_stats(item, "account", key)
            took.append(time.perf_counter() - begin)
            while time.perf_counter() - begin < PACE_SECONDS:
                pass
    finally:
        threading.Timer.start = started  # type: ignore[method-assign]
        spinning.set()
    return summary(took, timers)


async def measure_redis(url: str, requests: int, accounts: int, ours: bool) -> dict:
    pool = redis.asyncio.ConnectionPool.from_url(url)
    client = redis.asyncio.Redis(connection_pool=pool)
    await client.flushdb()
    item = limits.parse(LIMIT)
    storage = storage_from_string(f"async+{url}", implementation="redispy", connection_pool=pool)
    theirs = limits.aio.strategies.MovingWindowRateLimiter(storage)
    window = RedisMovingWindow(client)
    took = []
    for n in range(requests):
        key = f"acct{n % accounts:04d}"
        begin = time.perf_counter()
        assert await count(window if ours else theirs, item, key)
        took.append(time.perf_counter() - begin)
    await pool.aclose()
    return summary(took, 0)


async def count(limiter, item, key: str) -> bool:
    """One request counted as the account gate counts it: through the service's window
    (one call), or `limits`' limiter (its hit, then its window for the headers)."""
    if isinstance(limiter, RedisMovingWindow):
        allowed, _, _ = await limiter.hit(item, "account", key)
        return allowed
    allowed = await limiter.hit(item, "account", key)
    await limiter.get_window_stats(item, "account", key)
    return allowed


async def measure_redis_together(
    url: str, requests: int, accounts: int, ours: bool, concurrency: int
) -> dict:
    """`concurrency` requesters at once, as a loaded worker's connections are: the
    process's CPU time and Redis's a request, and requests a second."""
    pool = redis.asyncio.ConnectionPool.from_url(url)
    client = redis.asyncio.Redis(connection_pool=pool)
    await client.flushdb()
    item = limits.parse(f"{requests}/minute")  # no account reaches it
    storage = storage_from_string(f"async+{url}", implementation="redispy", connection_pool=pool)
    theirs = limits.aio.strategies.MovingWindowRateLimiter(storage)
    window = RedisMovingWindow(client)

    async def requester(first: int) -> None:
        for n in range(first, requests, concurrency):
            assert await count(window if ours else theirs, item, f"acct{n % accounts:04d}")

    async def redis_cpu() -> float:
        info = await client.info("cpu")
        return info["used_cpu_sys"] + info["used_cpu_user"]

    server_before, cpu_before, begin = await redis_cpu(), time.process_time(), time.perf_counter()
    await asyncio.gather(*(requester(first) for first in range(concurrency)))
    elapsed = time.perf_counter() - begin
    cpu, server = time.process_time() - cpu_before, await redis_cpu() - server_before
    await pool.aclose()
    return {
        "cpu_us": cpu / requests * 1e6,
        "redis_us": server / requests * 1e6,
        "per_second": requests / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--accounts", type=int, default=50)
    parser.add_argument("--redis", help="also measure on this Redis database (it is emptied)")
    parser.add_argument(
        "--concurrency", type=int, default=32, help="requesters at once, the Redis rows' second run"
    )
    args = parser.parse_args()
    sys.setswitchinterval(0.005)  # the interpreter's default, stated
    print(f"{args.requests:,} requests over {args.accounts} accounts, one every 0.2 ms")
    print(f"{'storage':<22}{'beside':<16}{'mean us':>9}{'p99 us':>9}{'max ms':>9}{'threads':>9}")
    rows = {}
    for busy in (False, True):
        for name, make in (
            ("limits memory://", lambda: storage_from_string("memory://")),
            ("LocalMovingWindow", LocalMovingWindow),
        ):
            rows[name, busy] = measure(make(), args.requests, args.accounts, busy)
            print_row(name, "a busy thread" if busy else "nothing", rows[name, busy])
    if args.redis:
        for name, ours in (("limits Redis", False), ("RedisMovingWindow", True)):
            rows[name, False] = asyncio.run(
                measure_redis(args.redis, args.requests, args.accounts, ours)
            )
            print_row(name, "nothing", rows[name, False])
    if args.redis:
        at_once = f"{args.accounts} accounts, {args.concurrency} at once"
        print(f"\n{args.requests:,} requests over {at_once}")
        print(f"{'storage':<22}{'CPU us/request':>16}{'Redis us/request':>18}{'requests/s':>12}")
        for name, ours, concurrency in (
            ("limits Redis", False, args.concurrency),
            ("RedisMovingWindow", True, args.concurrency),
            ("  the same, 1 at once", True, 1),  # a call a request: nothing to batch
        ):
            rows[name, "together"] = found = asyncio.run(
                measure_redis_together(args.redis, args.requests, args.accounts, ours, concurrency)
            )
            print(
                f"{name:<22}{found['cpu_us']:>16.1f}{found['redis_us']:>18.1f}"
                f"{found['per_second']:>12,.0f}"
            )
        print()
    for busy in (False, True):
        ours, theirs = rows["LocalMovingWindow", busy], rows["limits memory://", busy]
        print(
            f"LocalMovingWindow/limits memory:// mean time, beside "
            f"{'a busy thread' if busy else 'nothing'}: {ours['mean_us'] / theirs['mean_us']:.2f}x"
        )
    if args.redis:
        ours, theirs = rows["RedisMovingWindow", False], rows["limits Redis", False]
        print(
            f"RedisMovingWindow/limits Redis mean time: {ours['mean_us'] / theirs['mean_us']:.2f}x"
        )
        ours, theirs = rows["RedisMovingWindow", "together"], rows["limits Redis", "together"]
        print(
            f"RedisMovingWindow/limits Redis, {args.concurrency} at once: CPU a request "
            f"{ours['cpu_us'] / theirs['cpu_us']:.2f}x, Redis's CPU a request "
            f"{ours['redis_us'] / theirs['redis_us']:.2f}x"
        )


if __name__ == "__main__":
    main()
