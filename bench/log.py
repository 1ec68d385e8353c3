"""What the erasure log costs the redaction path: the same redactions with and without it,
in one run, on SQLite.

Four copies of one database file hold the same --records SMS records of one account.
Each copy is redacted in a child process of its own, through the service's code:

- a job naming every record, run batch by batch (--batch), as `bench/jobs.py` does;
- the Redact API's path without HTTP: --concurrency coroutines each awaiting
  `redact_transaction_async` (the group commit) for one record after another, the first
  --api-records records.

Each runs once as the service does (every redaction appended to the account's erasure
log, in its transaction) and once with `models.proof.entries.append` replaced by a stand-in that
writes nothing: the baseline without the log. The Merkle tree over the entries is built
off the redaction's path, by the tree-head task (`models.proof.tree.integrate`); its speed is
printed too, from the job's entries. Rounds alternate the two. Printed: the best
records/s of each, the log's cost from them, 1 - with/without (target <= 10%), and the
cost within each round (the spread says how much of it is noise on shared cores).

    python bench/log.py [--records 200000] [--api-records 20000] [--batch 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import pathlib
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.jobs import API_KEY, SUBJECT_KEY, build_database, record_id  # noqa: E402


def without_log() -> None:
    """The baseline: appending to the log writes nothing (positions are still handed
    out, so the callers run as they do)."""
    import itertools

    import models.proof.entries

    positions = itertools.count()

    def append(entries, now):
        return [next(positions) for _ in entries]

    models.proof.entries.append = append  # callers look it up on the module at each call


def child(path: str, mode: str, logged: bool, batch: int, api_records: int, concurrency: int):
    from models import database, open_store, redact_transaction_async

    open_store(f"sqlite:///{path}", subject_key=SUBJECT_KEY)
    if not logged:
        without_log()
    now = datetime.datetime.now(datetime.UTC)
    if mode == "api":
        ids = [record_id(n) for n in range(api_records)]

        async def worker(mine: list[str]) -> None:
            for transaction_id in mine:
                await redact_transaction_async(
                    api_key=API_KEY,
                    products=["sms"],
                    transaction_id=transaction_id,
                    product="sms",
                    direction=None,
                    now=now,
                    min_age_seconds=3600,
                    trace_id="bench",
                )

        async def everyone() -> None:
            await asyncio.gather(*(worker(ids[i::concurrency]) for i in range(concurrency)))

        started = time.perf_counter()
        asyncio.run(everyone())
        elapsed = time.perf_counter() - started
        print(json.dumps({"seconds": elapsed, "redacted": len(ids)}))
        return

    from models.jobs import TransactionRef
    from models.jobs.lease import WorkConfig
    from models.jobs.lifecycle import create_job, move
    from models.worker.queue import advance

    config = WorkConfig(min_age_seconds=3600, batch_size=batch, lease_seconds=60)

    def clock():
        return datetime.datetime.now(datetime.UTC)

    with database.connection_context():
        with sqlite3.connect(path) as counting:
            (count,) = counting.execute('SELECT count(*) FROM "transaction"').fetchone()
        refs = (TransactionRef(record_id(n), "sms") for n in range(count))
        job, _ = create_job(
            api_key=API_KEY, transactions=refs, subjects=(), now=clock(), max_unfinished=10
        )
        advance(job.id, owner="bench", clock=clock, config=config)  # validates
        job = move(type(job).get_by_id(job.seq), "run")
        started = time.perf_counter()
        advance(job.id, owner="bench", clock=clock, config=config)  # runs
        elapsed = time.perf_counter() - started
        job = type(job).get_by_id(job.seq)
        integration = None
        if logged:  # the tree, built off the redaction's path (the tree-head task)
            from models.proof.tree import integrate

            started = time.perf_counter()
            integrate(API_KEY)
            integration = time.perf_counter() - started
    print(json.dumps({"seconds": elapsed, "redacted": job.redacted, "integrate": integration}))


def measure(work: pathlib.Path, source: pathlib.Path, name: str, args, mode: str, logged: bool):
    path = work / f"{name}.db"
    shutil.copy(source, path)
    result = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            str(path),
            mode,
            "log" if logged else "nolog",
            "--batch",
            str(args.batch),
            "--api-records",
            str(args.api_records),
            "--concurrency",
            str(args.concurrency),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(result.stderr)
    outcome = json.loads(result.stdout)
    with sqlite3.connect(path) as counting:
        (entries,) = counting.execute("SELECT coalesce(sum(count), 0) FROM log_chunk").fetchone()
    expected = outcome["redacted"] + (1 if mode == "job" else 0) if logged else 0
    if entries != expected:
        raise SystemExit(f"{name}: {entries} log entries, expected {expected}")
    path.unlink()
    if outcome.get("integrate"):
        args.integration.append(outcome["redacted"] / outcome["integrate"])
    return outcome["redacted"] / outcome["seconds"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--api-records", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=pathlib.Path)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.integration = []
    if args.child:
        path, mode, logged = args.child
        child(path, mode, logged == "log", args.batch, args.api_records, args.concurrency)
        return 0

    report: dict = {"records": args.records, "api_records": args.api_records, "rounds": []}
    with tempfile.TemporaryDirectory(prefix="redact-log-bench-") as workdir:
        work = pathlib.Path(workdir)
        print(f"building {args.records:,} records ...", flush=True)
        build_database(work / "source.db", args.records)
        for round_ in range(args.rounds):  # alternating, so drift hits both alike
            figures = {}
            for mode in ("job", "api"):
                for logged in (False, True):
                    name = f"{mode}-{'log' if logged else 'nolog'}"
                    figures[name] = measure(work, work / "source.db", name, args, mode, logged)
                    print(f"  round {round_ + 1} {name:10} {figures[name]:>10,.0f} records/s")
            report["rounds"].append(figures)

    print()
    for mode, what in (("job", "job run"), ("api", "API path (group commit)")):
        without = max(r[f"{mode}-nolog"] for r in report["rounds"])
        with_log = max(r[f"{mode}-log"] for r in report["rounds"])
        cost = 1 - with_log / without
        rounds = [1 - r[f"{mode}-log"] / r[f"{mode}-nolog"] for r in report["rounds"]]
        report[f"{mode}_cost"] = cost
        report[f"{mode}_cost_by_round"] = rounds
        print(
            f"{what:26} without the log {without:>9,.0f}/s   with it {with_log:>9,.0f}/s"
            f"   cost {cost:6.1%} (target <= 10%); by round "
            + ", ".join(f"{c:.1%}" for c in rounds)
        )
    report["integration_records_per_second"] = max(args.integration)
    print(
        f"{'building the tree':26} (integrate, in the tree-head task) "
        f"{report['integration_records_per_second']:>9,.0f} entries/s"
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
