"""How evenly two workers share 8 keep-alive connections, run after run, on the redaction
path: `redact serve --workers 2` (the parent hands each connection to the least-loaded
worker, app/workers.py) beside uvicorn's own multi-worker mode on the same app (every
worker accepting from one shared socket, as `redact serve` did before), in one run.

One SQLite store of sealed records is prepared (`bench.run.prepare_database`). Each of
--runs rounds starts each server afresh on it, with its own PROMETHEUS_MULTIPROC_DIR, and
loads it with wrk (bench/redact.lua, `-t2 -c8`, fresh record ids, --seconds); then every
worker's own count of requests answered is read from its metrics file
(redact_http_requests_total in counter_<pid>.db). A redaction waits on its commit, so a
worker serves in proportion to the connections it holds. Printed per round: each server's
redactions/s and its busiest worker's share of the requests; then the busiest share over
the rounds, against the target (every worker between 35% and 65%).

    python bench/split.py [--runs 10] [--seconds 3] [--records 150000]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import sys
import tempfile
import time

from prometheus_client.mmap_dict import MmapedDict

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import run  # noqa: E402

CONNECTIONS = 8
BIN = pathlib.Path(sys.executable).parent
TARGET = (0.35, 0.65)
SERVERS = {
    "redact serve --workers 2": [str(BIN / "redact"), "serve", "--workers", "2", "--port"],
    "uvicorn --workers 2 (shared socket)": [
        *(str(BIN / "uvicorn"), "app.asgi:app", "--workers", "2", "--log-level", "warning"),
        *("--no-access-log", "--http", "app.server:GuardedHttpToolsProtocol", "--port"),
    ],
}


def requests_by_worker(directory: pathlib.Path) -> dict[int, float]:
    counts: dict[int, float] = {}
    for path in directory.glob("counter_*.db"):
        pid = int(path.stem.split("_")[1])
        for key, value, _, _ in MmapedDict.read_all_values_from_file(str(path)):
            if json.loads(key)[0] == "redact_http_requests":
                counts[pid] = counts.get(pid, 0) + value
    return counts


def one_round(
    command: list[str], work: pathlib.Path, ids: run.IdRange, seconds: int
) -> tuple[float, dict[int, float]]:
    metrics = work / "metrics"
    shutil.rmtree(metrics, ignore_errors=True)
    metrics.mkdir()
    env = {
        **run.SERVICE_ENV,
        "DATABASE_URL": f"sqlite:///{work / 'svc.db'}",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics),
    }
    port = run.free_port()
    log = work / "server.log"
    with run.serve([*command, str(port)], port, env, log, cwd=work) as served:
        time.sleep(1)  # every worker up (uvicorn answers once its first is)
        before = requests_by_worker(metrics)
        result = run.run_wrk(served.base_url + run.PATH, ids, seconds, CONNECTIONS, log)
        after = requests_by_worker(metrics)
    return result.rate, {pid: after[pid] - before.get(pid, 0) for pid in after}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--records", type=int, default=150_000)
    args = parser.parse_args()
    work = pathlib.Path(tempfile.mkdtemp(prefix="redact-split-"))
    print(f"preparing {args.records:,} records ...", flush=True)
    run.prepare_database(f"sqlite:///{work / 'svc.db'}", args.records)
    allocator = run.IdAllocator()
    per_run = args.records // (2 * args.runs * run.WRK_THREADS) * run.WRK_THREADS
    worst = dict.fromkeys(SERVERS, 0.0)
    print(f"{'round':>5}  " + "  ".join(f"{name:>38}" for name in SERVERS))
    for round_ in range(1, args.runs + 1):
        cells = []
        for name, command in SERVERS.items():
            ids = allocator.take(per_run)
            rate, served = one_round(command, work, ids, args.seconds)
            total = sum(served.values()) or 1
            busiest = max(served.values(), default=0) / total
            worst[name] = max(worst[name], busiest)
            cells.append(f"{rate:>10,.0f} redactions/s, busiest {busiest:>4.0%}")
        print(f"{round_:>5}  " + "  ".join(f"{cell:>38}" for cell in cells), flush=True)
    shutil.rmtree(work)
    for name, share in worst.items():
        verdict = "met" if share <= TARGET[1] else "missed"
        print(
            f"{name}: busiest worker at most {share:.0%} of the requests over "
            f"{args.runs} rounds (target {TARGET[0]:.0%}-{TARGET[1]:.0%}: {verdict})"
        )


if __name__ == "__main__":
    main()
