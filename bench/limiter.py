"""What the in-process rate limiter costs a request, beside `limits`' own memory storage, in
one run.

`python bench/limiter.py [--requests 20000] [--accounts 10]` counts requests as the
account gate does (app/http/gate.py: the moving window's `hit`, then `get_window_stats`
for the RateLimit headers) against a limit never reached, paced a request every 0.2 ms (so
the window's bookkeeping runs as it does under load), through:

  limits memory://   `limits`' MemoryStorage, which drops expired entries on a timer thread
                     it starts again 10 ms after the last one ended;
  LocalMovingWindow  app/http/moving_window.py, the storage `memory://` uses here.

Each is measured twice: alone, and with a thread spinning in Python beside it (what a job
running in the same process is to the event loop). It prints the mean and worst time of
one request's count, and how many threads the storage started.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time

import limits
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from app.http.moving_window import LocalMovingWindow

PACE_SECONDS = 0.0002


def measure(storage, requests: int, accounts: int, busy: bool) -> dict:
    limiter = MovingWindowRateLimiter(storage)
    item = limits.parse("1000000/second")
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
    return {
        "mean_us": statistics.fmean(took) * 1e6,
        "p99_us": statistics.quantiles(took, n=100)[98] * 1e6,
        "max_ms": max(took) * 1e3,
        "threads": timers,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--accounts", type=int, default=10)
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
            row = rows[name, busy] = measure(make(), args.requests, args.accounts, busy)
            beside = "a busy thread" if busy else "nothing"
            print(
                f"{name:<22}{beside:<16}{row['mean_us']:>9.1f}{row['p99_us']:>9.1f}"
                f"{row['max_ms']:>9.2f}{row['threads']:>9,}"
            )
    for busy in (False, True):
        ours, theirs = rows["LocalMovingWindow", busy], rows["limits memory://", busy]
        print(
            f"LocalMovingWindow/limits memory:// mean time, beside "
            f"{'a busy thread' if busy else 'nothing'}: {ours['mean_us'] / theirs['mean_us']:.2f}x"
        )


if __name__ == "__main__":
    main()
