"""What the redaction path's durable commit costs, alone (no HTTP), beside plain SQLite
doing the same writes, in one run.

One store of --records sealed SMS records of the bench account is built once
(`bench.run.prepare_database`); every run below works on a fresh copy of it (every
`svc.db*` file: the data store, its key store, KEK and signing key). The rows:

  plain UPDATE batch  the floor: one process of raw `sqlite3`, no service code, with the
                      data store's pragmas (models.store.state.SQLITE_PRAGMAS), writing
                      what a redaction writes to the record (fields 'REDACTED', keys
                      NULL, redacted_at) for --concurrency records per transaction;
  service, N workers  N processes (1, then 2), each running --concurrency coroutines that
                      await `redact_transaction_async` for one fresh record after
                      another: the group commit, the key store's destroys, the audit and
                      the erasure log, as a request runs them after its HTTP layer.

Every row runs for --seconds from a start time its processes share, each process on a
disjoint slice of the record ids (a row that runs out before then is flagged capped).
redactions/s (rows/s for the plain UPDATE) is all processes' count over the time from the
first start to the last end; pages are those a commit writes back, counted from the
rollback journal (models.store.journal.JournalPages). Each
service batch is reported by the group commit's observer (`GroupCommit.observer`, a
`Commit`): printed are the histogram of batch sizes, the mean size, the pages per
commit and per redaction, and the mean ms per batch waiting for the process lock (the
other worker's batch) and holding it. Then one more 1-worker run of about 2 s under
`strace -f -c -e trace=fsync,fdatasync` gives the fsyncs per commit (both stores' syncs,
and the few of opening and closing the store), if strace is installed; beside it, what one
fsync costs on the store's disk (p50 and p99 of FSYNC_SAMPLES 4 KiB writes, each
fsynced): a lone redaction's commit waits for its fsyncs in a row, the floor of its
latency. Last, the ratio of the service's redactions/s to the plain UPDATE's.

    python bench/commit.py [--records 200000] [--seconds 5] [--concurrency 16] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import pathlib
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import API_KEY, open_bench_store, prepare_database, record_id  # noqa: E402

START_DELAY = 3.0  # seconds for the children to import and open the store before the start
STRACE_SECONDS = 2.0
FSYNC_SAMPLES = 500
COLUMNS = (  # heading, figure, width, format
    ("redactions/s", "per_second", 13, ",.0f"),
    ("batch mean", "batch_mean", 12, ".1f"),
    ("pages/commit", "pages_per_commit", 14, ".1f"),
    ("pages/redaction", "pages_per_redaction", 17, ".2f"),
    ("lock wait ms", "lock_wait_ms", 14, ".2f"),
    ("held ms", "held_ms", 9, ".2f"),
)
BUCKETS = ((1, 1), (2, 3), (4, 7), (8, 15), (16, 31), (32, None))
REQUEST = {  # as the API's handler asks, but for the record id and the time
    "api_key": API_KEY,
    "products": ["sms"],
    "product": "sms",
    "direction": "outbound",
    "min_age_seconds": 3600,
    "trace_id": "bench",
}
PLAIN = "plain UPDATE batch (sqlite3, the store's pragmas)"
PLAIN_UPDATE = (
    "UPDATE \"transaction\" SET sender='REDACTED', recipient='REDACTED', body='REDACTED',"
    " sender_key=NULL, recipient_key=NULL, redacted_at=? WHERE id=? AND api_key=?"
)


def bucket_name(low: int, high: int | None) -> str:
    return str(low) if low == high else f"{low}+" if high is None else f"{low}-{high}"


BUCKET_NAMES = [bucket_name(*bucket) for bucket in BUCKETS]
SUMS = ("done", "commits", "size", "waited", "held", "pages", "known", *BUCKET_NAMES)
"""What a child counts (`known`: commits whose pages are known; then batches by size)."""


def wait_until(start_at: float) -> float:
    """Sleep until the shared start; the time it began."""
    while time.time() < start_at:
        time.sleep(0.001)
    return time.time()


def count_commit(figures: dict, size: int, waited: float, held: float, pages) -> None:
    for key, value in (("commits", 1), ("size", size), ("waited", waited), ("held", held)):
        figures[key] += value
    if pages is not None:
        figures["pages"] += pages
        figures["known"] += 1
    for (low, high), name in zip(BUCKETS, BUCKET_NAMES, strict=True):
        if size >= low and (high is None or size <= high):
            figures[name] += 1


def service_child(directory: str, first: int, count: int, concurrency: int, start_at, seconds):
    from models import redact_transaction_async
    from models.store.group_commit import Commit

    store = open_bench_store(f"sqlite:///{directory}/svc.db")
    commits: list[Commit] = []
    store.group_commit.observer = commits.append  # on the writer thread; append is atomic
    ids = [record_id(n) for n in range(first, first + count)]
    figures = dict.fromkeys(SUMS, 0)
    started = wait_until(start_at)
    until = started + seconds

    async def worker(mine: list[str]) -> None:
        for transaction_id in mine:
            if time.time() >= until:
                return
            now = datetime.datetime.now(datetime.UTC)
            await redact_transaction_async(**REQUEST, transaction_id=transaction_id, now=now)
            figures["done"] += 1

    async def everyone() -> None:
        await asyncio.gather(*(worker(ids[k::concurrency]) for k in range(concurrency)))

    asyncio.run(everyone())
    ended = time.time()
    store.close()
    for commit in commits:
        count_commit(figures, *commit)
    # The coroutines share the ids out in turn: if they ran out, all did, before the end.
    return {**figures, "capped": ended < until, "span": (started, ended)}


def plain_child(directory: str, first: int, count: int, batch: int, start_at, seconds):
    from models.store.journal import JournalPages
    from models.store.state import SQLITE_PRAGMAS

    path = f"{directory}/svc.db"
    connection = sqlite3.connect(path, isolation_level=None)
    for name, value in SQLITE_PRAGMAS.items():
        connection.execute(f"PRAGMA {name}={value}")
    journal_pages = JournalPages(path)
    figures = dict.fromkeys(SUMS, 0)
    started = wait_until(start_at)
    until = started + seconds
    number = first
    while time.time() < until and number < first + count:
        numbers = range(number, min(number + batch, first + count))
        number = numbers.stop
        now = str(datetime.datetime.now(datetime.UTC))
        began = time.perf_counter()
        connection.execute("BEGIN IMMEDIATE")  # as the service's writer begins
        rows = [(now, record_id(n), API_KEY) for n in numbers]
        cursor = connection.executemany(PLAIN_UPDATE, rows)
        if cursor.rowcount != len(numbers):
            raise SystemExit(f"plain UPDATE: {cursor.rowcount} rows of {len(numbers)}")
        pages = journal_pages()  # before the commit empties the journal
        connection.execute("COMMIT")
        figures["done"] += len(numbers)
        count_commit(figures, len(numbers), 0.0, time.perf_counter() - began, pages)
    ended = time.time()
    connection.close()
    return {**figures, "capped": ended < until, "span": (started, ended)}


def child(mode: str, directory: str, first: int, count: int, concurrency: int, start_at: float):
    kind, seconds = mode.split(":")
    run = plain_child if kind == "plain" else service_child
    print(json.dumps(run(directory, first, count, concurrency, start_at, float(seconds))))


def measure(args, source, work, name, mode, workers, seconds, strace=None) -> dict:
    """Run `workers` children on a fresh copy of the store (every `svc.db*` file: the key
    store, its KEK, ... too); their figures added up."""
    directory = work / name
    directory.mkdir()
    for path in source.glob("svc.db*"):
        shutil.copy2(path, directory / path.name)
    per = args.records // workers
    start_at = time.time() + START_DELAY
    children = []
    for k in range(workers):
        numbers = (directory, k * per, per, args.concurrency, start_at)
        command = [sys.executable, __file__, "--child", f"{mode}:{seconds}", *map(str, numbers)]
        if strace:
            command = ["strace", "-f", "-c", "-e", "trace=fsync,fdatasync", "-o", strace, *command]
        children.append(subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT))
    outcomes = []
    for process in children:
        out, _ = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"{name}: a child failed (exit {process.returncode})")
        outcomes.append(json.loads(out.strip().splitlines()[-1]))
    shutil.rmtree(directory)
    total = {key: sum(outcome[key] for outcome in outcomes) for key in SUMS}
    commits, known = max(1, total["commits"]), total["known"]
    elapsed = max(o["span"][1] for o in outcomes) - min(o["span"][0] for o in outcomes)
    figures = {
        "workers": workers,
        "redactions": total["done"],
        "commits": total["commits"],
        "per_second": total["done"] / elapsed,
        "batch_mean": total["size"] / commits,
        "pages_per_commit": total["pages"] / known if known else None,
        "pages_per_redaction": total["pages"] / total["size"] if known == commits else None,
        "lock_wait_ms": 1000 * total["waited"] / commits,
        "held_ms": 1000 * total["held"] / commits,
        "histogram": {name: total[name] for name in BUCKET_NAMES},
        "capped": any(o["capped"] for o in outcomes),
    }
    if figures["capped"]:
        warning = f"WARNING: {name} ran out of records before {seconds:g} s: its figure is capped"
        print(f"{warning}; run with a larger --records")
    return figures


def strace_fsyncs(summary: pathlib.Path) -> int:
    """fsync + fdatasync calls from `strace -c`'s table (columns: % time, seconds,
    usecs/call, calls, [errors,] syscall)."""
    calls = 0
    for line in summary.read_text().splitlines():
        fields = line.split()
        if fields and fields[-1] in ("fsync", "fdatasync") and fields[3].isdigit():
            calls += int(fields[3])
    return calls


def row(label: str, figures: dict, lock: bool = True) -> str:
    cells = [f"{label:50}"]
    for _, key, width, form in COLUMNS:
        value = None if key == "lock_wait_ms" and not lock else figures[key]
        cells.append(f"{'-':>{width}}" if value is None else f"{value:>{width}{form}}")
    return "".join(cells)


def fsync_latency(directory: pathlib.Path, count: int = FSYNC_SAMPLES) -> dict:
    """What one fsync costs on the store's disk: `count` times, a 4 KiB write at a random
    page of a 16 MiB file, then fsync; the p50 and p99 of the fsync alone, in ms."""
    path = directory / "fsync-probe"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.ftruncate(fd, 16 << 20)
        os.fsync(fd)
        page = os.urandom(4096)
        taken = []
        for _ in range(count):
            os.pwrite(fd, page, random.randrange(4096) * 4096)
            started = time.perf_counter()
            os.fsync(fd)
            taken.append((time.perf_counter() - started) * 1000)
    finally:
        os.close(fd)
        path.unlink()
    cuts = statistics.quantiles(taken, n=100)
    return {"p50_ms": cuts[49], "p99_ms": cuts[98]}


def plural(workers: int) -> str:
    return f"{workers} worker{'s' * (workers > 1)}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--json", type=pathlib.Path)
    parser.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, directory, first, count, concurrency, start_at = args.child
        child(mode, directory, int(first), int(count), int(concurrency), float(start_at))
        return 0

    report: dict = {key: getattr(args, key) for key in ("records", "seconds", "concurrency")}
    report["fsyncs_per_commit"] = None  # unless strace is installed
    with tempfile.TemporaryDirectory(prefix="redact-commit-bench-") as workdir:
        work = pathlib.Path(workdir)
        source = work / "source"
        source.mkdir()
        print(f"building {args.records:,} sealed records ...", file=sys.stderr, flush=True)
        prepare_database(f"sqlite:///{source}/svc.db", args.records)
        report["fsync"] = fsync_latency(work)
        report["plain"] = measure(args, source, work, "plain", "plain", 1, args.seconds)
        for workers in (1, 2):
            report[f"service_{workers}"] = measure(
                args, source, work, f"service-{workers}", "service", workers, args.seconds
            )
        if shutil.which("strace"):
            summary = work / "strace.txt"
            traced = measure(args, source, work, "strace", "service", 1, STRACE_SECONDS, summary)
            report["fsyncs_per_commit"] = strace_fsyncs(summary) / max(1, traced["commits"])

    print(
        f"commit path alone, SQLite, {args.concurrency} coroutines per process, "
        f"{args.seconds:g} s, {args.records:,} sealed records"
    )
    print(f"{'':50}" + "".join(f"{heading:>{width}}" for heading, _, width, _ in COLUMNS))
    print(row(PLAIN, report["plain"], lock=False))
    for workers in (1, 2):
        print(row(f"service, {plural(workers)}", report[f"service_{workers}"]))
    for workers in (1, 2):
        histogram = report[f"service_{workers}"]["histogram"]
        label = f"batch sizes ({plural(workers)}):"
        print(f"{label:25}" + "  ".join(f"{k}: {v}" for k, v in histogram.items()))
    fsyncs = report["fsyncs_per_commit"]
    measured = "not measured (strace missing)" if fsyncs is None else f"{fsyncs:.1f}"
    print(f"fsyncs per commit{'' if fsyncs is None else ' (1 worker, strace)'}: {measured}")
    fsync = report["fsync"]
    floor = ""
    if fsyncs is not None:
        floor = f"; a commit's {fsyncs:.1f} fsyncs at p50: {fsyncs * fsync['p50_ms']:.1f} ms"
    print(
        f"one fsync on this disk ({FSYNC_SAMPLES} samples): p50 {fsync['p50_ms']:.2f} ms, "
        f"p99 {fsync['p99_ms']:.2f} ms{floor}"
    )
    plain = report["plain"]["per_second"]
    report["ratio"] = {w: report[f"service_{w}"]["per_second"] / plain for w in (1, 2)}
    ratios = ", ".join(f"{plural(w)} {ratio:.2f}x" for w, ratio in report["ratio"].items())
    print(f"service/plain UPDATE: {ratios}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
