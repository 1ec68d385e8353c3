"""What a full pass of the garbage collector holds a served process for, before and after
the process settles its heap (app/server.py's `settle_heap`), in one run.

`python bench/heap.py [--requests 200] [--passes 5]` builds the app as a worker does, on a
fresh SQLite store with the demo account, serves it `--requests` requests of each kind a
client sends (a redaction, a record read, a tree head, the health check) through its
test client, so that what the app builds on first use is built, and then times full
passes of the collector (`gc.collect()`, the median of `--passes`): first over the heap
as it is, the baseline, then once the heap is settled. A full pass holds the interpreter's
lock throughout, so it is how long every thread of the process, the event loop included,
stops; CPython runs one whenever enough objects have survived since the last.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time


def full_pass_ms(passes: int) -> float:
    times = []
    for _ in range(passes):
        start = time.perf_counter()
        gc.collect()
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--passes", type=int, default=5)
    args = parser.parse_args()

    folder = tempfile.mkdtemp(prefix="redact-heap-")
    os.environ["DATABASE_URL"] = f"sqlite:///{folder}/redact.db"
    os.environ["REDACT_RATE_LIMIT"] = "1000000/second"  # every request counted, none refused
    subprocess.run([sys.executable, "-m", "app.cli", "migrate"], check=True, capture_output=True)

    from app import create_app
    from app.demo import API_KEY, API_SECRET, seed_demo
    from app.server import settle_heap

    app = create_app()
    token = base64.b64encode(f"{API_KEY}:{API_SECRET}".encode()).decode()
    headers = {"Authorization": f"Basic {token}"}
    with app.test_client() as client:
        seed_demo(datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1))
        body = {"id": "0A0000000DEMO0001", "product": "sms", "type": "outbound"}
        for _ in range(args.requests):
            answers = [
                client.post("/v1/redact/transaction", json=body, headers=headers),
                client.get(
                    "/v1/redact/records/0A0000000DEMO0002?product=sms&type=inbound",
                    headers=headers,
                ),
                client.get("/v1/redact/log/tree-head", headers=headers),
                client.get("/healthz"),
            ]
            if any(answer.status_code >= 300 for answer in answers):
                failed = [(answer.url.path, answer.status_code) for answer in answers]
                sys.exit(f"error: a request failed: {failed}")

        objects = len(gc.get_objects())
        unsettled = full_pass_ms(args.passes)
        settle_heap()
        settled = full_pass_ms(args.passes)
        since = len(gc.get_objects())

    served = 4 * args.requests
    print(f"a served app after {served} requests; full passes, median of {args.passes}")
    print(f"{'heap':<30}{'objects scanned':>16}{'full pass ms':>14}")
    print(f"{'as built (baseline)':<30}{objects:>16,}{unsettled:>14.2f}")
    print(f"{'settled (gc.freeze)':<30}{since:>16,}{settled:>14.2f}")
    print(f"settled/as built: {settled / unsettled:.3f}x")


if __name__ == "__main__":
    main()
