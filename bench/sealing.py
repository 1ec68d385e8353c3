"""What sealing personal fields costs: this build beside the same service without it (the
commit before sealing, checked out in a git worktree), measured in one run, SQLite, 2
worker processes on one store, loopback. Each worker is a `redact serve` of its own on a
port of its own and takes half the load (half the connections, half the requests): with
`--workers 2` the two share one listening socket, and how the connections fall between
them (often most on one) moves a run's figure by up to 2x, which would measure the
balance, not sealing.

1. Ingestion: --records SMS records through `POST /v1/redact/records`, 1,000 a request, 4
   in flight (bodies encoded before the clock starts). Target: >= 0.6x.
2. The Redact API path: wrk (2 threads, --connections) redacting records never redacted
   before, of a store holding --store records loaded by `redact transactions load`.
   Target: >= 0.9x.
3. Read-back: wrk reading random records of that store through `GET
   /v1/redact/records/{id}`. Target: >= 0.8x.
4. Erasing a number: a subject job (create, validate, run: the job code in a child
   process, as bench/jobs.py runs it) for a number carried by 10,000 records, among
   10,000 others. Target: < 1 s.
5. Key rotation: `redact keys rotate`'s re-wrap of --keys live data keys (this build
   only). Target: >= 10,000 keys/s.

    python bench/sealing.py [--records 50000] [--store 100000] [--duration 10]
                            [--connections 32] [--keys 100000] [--rounds 3]
                            [--baseline REF] [--json PATH]

Throughputs are measured --rounds times, the two builds taking turns; the best run of
each is compared, and every run is printed.

--baseline names the commit without sealing (default: the parent of the commit that added
models/store/sealing.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

BENCH_DIR = pathlib.Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

import records as records_bench  # noqa: E402  (bench/records.py: the ingestion client)
import run  # noqa: E402  (bench/run.py: the servers' start and stop)

SUBJECT_KEY = run.SUBJECT_KEY
# The account of bench/records.py's client.
API_KEY, API_SECRET = records_bench.API_KEY, records_bench.API_SECRET
AUTH_HEADER = records_bench.AUTH_HEADER
NUMBER = "447700911000"
PER_REQUEST = 1000


class BenchError(Exception):
    pass


# ------------------------------------------------------------------------- the children


def _records(first: int, count: int, to: str = "447700900002", account: bool = True):
    """Load-file lines (with `api_key`), or the records API's records (`account` false)."""
    created = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=2)
    for n in range(first, first + count):
        yield json.dumps(
            {
                "id": run.record_id(n),
                **({"api_key": API_KEY} if account else {}),
                "product": "sms",
                "type": "outbound",
                "created_at": created.isoformat(),
                "from": "447700900001",
                "to": to,
                "text": run.BODY,
            }
        )


def child_prepare(path: str, count: int, subject: int) -> None:
    """In the tree this process runs from: fresh tables, the bench account, `count`
    records loaded as `redact transactions load` loads them (the first `subject` of them
    to NUMBER)."""
    import models
    from models import Account, create_tables, database, load_records, open_store

    open_store(f"sqlite:///{path}", subject_key=SUBJECT_KEY.encode())
    create_tables()
    with database.connection_context():
        Account.register(API_KEY, API_SECRET)
        for first, last, to in ((0, subject, NUMBER), (subject, count, "447700900002")):
            for start in range(first, last, 20_000):
                load_records(_records(start, min(20_000, last - start), to))
    print(json.dumps({"models": models.__file__}))


def child_subject(path: str) -> None:
    """The subject job for NUMBER, timed as bench/jobs.py times a job."""
    from models import database, open_store
    from models.jobs.lease import WorkConfig
    from models.jobs.lifecycle import create_job, move
    from models.worker.queue import advance

    open_store(f"sqlite:///{path}", subject_key=SUBJECT_KEY.encode())
    config = WorkConfig(min_age_seconds=3600, batch_size=2000, lease_seconds=60)

    def clock():
        return datetime.datetime.now(datetime.UTC)

    with database.connection_context():
        started = time.perf_counter()
        job, _ = create_job(
            api_key=API_KEY, transactions=(), subjects=[NUMBER], now=clock(), max_unfinished=9
        )
        advance(job.id, owner="bench", clock=clock, config=config)
        job = move(type(job).get_by_id(job.seq), "run")
        ran = time.perf_counter()
        advance(job.id, owner="bench", clock=clock, config=config)
        finished = time.perf_counter()
        job = type(job).get_by_id(job.seq)
    print(
        json.dumps(
            {
                "status": job.status,
                "redacted": job.redacted,
                "seconds": finished - started,
                "run_seconds": finished - ran,
            }
        )
    )


def child_rotate(path: str, keys: int) -> None:
    """`keys` live data keys, then one rotation, timed."""
    from models import open_store
    from models.store.rotation import rotate

    store = open_store(f"sqlite:///{path}", subject_key=SUBJECT_KEY.encode())
    store.keystore.create_tables()
    for start in range(0, keys, 10_000):
        store.keystore.create(min(10_000, keys - start))
    started = time.perf_counter()
    rotation = rotate(store.keystore, datetime.datetime.now(datetime.UTC), datetime.timedelta(0))
    elapsed = time.perf_counter() - started
    print(json.dumps({"rewrapped": rotation.rewrapped, "seconds": elapsed}))


def in_tree(tree: pathlib.Path, *args: str) -> dict:
    """Run a child of this script with `tree`'s models first on the path; its JSON line."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, str(pathlib.Path(__file__)), "--child", *args],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"child {args} in {tree} failed:\n{done.stdout}{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------- the service


WORKERS = 2


@contextlib.contextmanager
def served(tree: pathlib.Path, path: pathlib.Path, work: pathlib.Path):
    """WORKERS processes of `tree`'s `redact serve` on one store, each on a port of its own
    (the load is split evenly between them: see the module's docstring); their URLs."""
    env = {
        "DATABASE_URL": f"sqlite:///{path}",
        "REDACT_SUBJECT_KEY": SUBJECT_KEY,
        "REDACT_RATE_LIMIT": "1000000/second",
        "TMPDIR": str(work),
        "PYTHONPATH": str(tree),
    }
    with contextlib.ExitStack() as stack:
        urls = []
        for worker in range(WORKERS):
            port = run.free_port()
            command = [sys.executable, "-m", "app.cli", "serve", "--port", str(port)]
            log = work / f"server-{worker}.log"
            urls.append(stack.enter_context(run.serve(command, port, env, log, cwd=tree)).base_url)
        yield urls


def wrk(urls: list[str], script: pathlib.Path, seconds: float, connections: int, envs) -> dict:
    """One wrk (one thread, its share of `connections`) per URL, at once; `envs` gives
    each its environment. The rates summed."""
    command = ["wrk", "-t1", f"-c{connections // len(urls)}", f"-d{seconds}s", "--latency", "-s"]
    running = [
        subprocess.Popen(
            [*command, str(script), url],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for url, env in zip(urls, envs, strict=True)
    ]
    found = {"rate": 0.0, "non_2xx": 0}
    for process in running:
        output = process.communicate()[0]
        lines = [line for line in output.splitlines() if line.startswith("BENCH_RESULT ")]
        if process.returncode != 0 or not lines:
            raise BenchError(f"wrk failed:\n{output}")
        raw = json.loads(lines[0].removeprefix("BENCH_RESULT "))
        found["rate"] += raw["requests"] / (raw["duration_us"] / 1e6)
        found["non_2xx"] += raw["non_2xx"]
    return found


def ingestion(tree: pathlib.Path, work: pathlib.Path, count: int) -> float:
    path = work / "ingest.db"
    in_tree(tree, "prepare", str(path), "0", "0")
    bodies = [
        f'{{"records": [{",".join(_records(first, PER_REQUEST, account=False))}]}}'.encode()
        for first in range(10_000_000, 10_000_000 + count, PER_REQUEST)
    ]

    async def send(urls: list[str]) -> list:
        shares = [bodies[i :: len(urls)] for i in range(len(urls))]
        return await asyncio.gather(
            *(
                records_bench.send_all(url, share, 2)
                for url, share in zip(urls, shares, strict=True)
            )
        )

    with served(tree, path, work) as urls:
        sent = asyncio.run(send(urls))
    elapsed = max(seconds for seconds, _ in sent)
    answers = [answer for _, share in sent for answer in share]
    bad = [a for a in answers if a[0] != 200 or json.loads(a[1])["stored"] != PER_REQUEST]
    if bad:
        raise BenchError(f"ingestion: {len(bad)} answers not all stored, e.g. {bad[0]}")
    return count / elapsed


def redact_and_read(tree: pathlib.Path, work: pathlib.Path, args) -> dict:
    path = work / "store.db"
    in_tree(tree, "prepare", str(path), str(args.store), "0")
    found: dict = {}
    reading = {"BENCH_AUTH": AUTH_HEADER, "BENCH_COUNT": str(args.store)}
    per_process = args.store // 4  # ids for one wrk: a quarter each, two phases
    with served(tree, path, work) as urls:
        wrk(urls, BENCH_DIR / "read.lua", 2, args.connections, [reading] * WORKERS)
        found["read"] = wrk(
            urls, BENCH_DIR / "read.lua", args.duration, args.connections, [reading] * WORKERS
        )
        redact_urls = [f"{url}/v1/redact/transaction" for url in urls]
        for phase, first, seconds in (("warm-up", 0, 2), ("redact", 2, args.duration)):
            envs = [
                {
                    "BENCH_AUTH": AUTH_HEADER,
                    "BENCH_FIRST": str((first + worker) * per_process),
                    "BENCH_PER_THREAD": str(per_process),
                }
                for worker in range(WORKERS)
            ]
            found[phase] = wrk(redact_urls, run.WRK_SCRIPT, seconds, args.connections, envs)
    for phase in ("read", "redact"):
        if found[phase]["non_2xx"]:
            raise BenchError(f"{tree}: {phase}: {found[phase]['non_2xx']} answers were not 2xx")
    return {"redact": found["redact"]["rate"], "read": found["read"]["rate"]}


def subject_erasure(tree: pathlib.Path, work: pathlib.Path) -> dict:
    path = work / "subject.db"
    in_tree(tree, "prepare", str(path), "20000", "10000")
    result = in_tree(tree, "subject", str(path))
    if (result["status"], result["redacted"]) != ("succeeded", 10_000):
        raise BenchError(f"{tree}: the subject job ended {result}")
    return result


# ------------------------------------------------------------------------------ main


def baseline_ref() -> str:
    added = subprocess.run(
        ["git", "log", "--diff-filter=A", "--format=%H", "--", "models/store/sealing.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    if not added:
        raise BenchError("no commit adds models/store/sealing.py: name --baseline")
    return f"{added[-1]}^"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--store", type=int, default=100_000)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline")
    parser.add_argument("--json", type=pathlib.Path)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        task, *rest = args.child
        {"prepare": lambda p, n, s: child_prepare(p, int(n), int(s)),
         "subject": child_subject,
         "rotate": lambda p, n: child_rotate(p, int(n))}[task](*rest)  # fmt: skip
        return 0

    ref = args.baseline or baseline_ref()
    with tempfile.TemporaryDirectory(prefix="redact-sealing-bench-") as workdir:
        work = pathlib.Path(workdir)
        plain = work / "baseline"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(plain), ref],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        try:
            report = measure(args, work, {"without": plain, "with": ROOT})
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(plain)], cwd=ROOT, check=False
            )
    report["baseline"] = ref
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


def measure(args, work: pathlib.Path, trees: dict[str, pathlib.Path]) -> dict:
    """Each throughput --rounds times, the builds taking turns, each run on fresh files;
    the best run of each build is reported, every run kept in `runs`."""
    report: dict = {"ingestion": {}, "redact": {}, "read": {}, "subject": {}, "runs": []}
    for round_ in range(args.rounds):
        for name, tree in trees.items():
            place = work / f"{name}-{round_}"
            place.mkdir()
            print(f"round {round_ + 1}, {name} sealing: ingestion ...", flush=True)
            run_ = {"build": name, "ingestion": ingestion(tree, place, args.records)}
            print(f"round {round_ + 1}, {name} sealing: redact and read-back ...", flush=True)
            run_.update(redact_and_read(tree, place, args))
            report["runs"].append(run_)
            for key in ("ingestion", "redact", "read"):
                report[key][name] = max(report[key].get(name, 0), run_[key])
    for name, tree in trees.items():
        print(f"{name} sealing: erasing a number ...", flush=True)
        place = work / f"{name}-subject"
        place.mkdir()
        report["subject"][name] = subject_erasure(tree, place)
    print("rotation ...", flush=True)
    report["rotation"] = in_tree(ROOT, "rotate", str(work / "rotate.db"), str(args.keys))
    return report


TARGETS = {"ingestion": 0.6, "redact": 0.9, "read": 0.8}


def print_report(report: dict) -> None:
    print(f"\nSQLite, 2 workers; baseline {report['baseline']} (no sealing)\n")
    for run_ in report["runs"]:
        print(
            f"  run: {run_['build']:8} ingestion {run_['ingestion']:9,.0f}/s  "
            f"redact {run_['redact']:7,.0f}/s  read {run_['read']:7,.0f}/s"
        )
    print(f"\nbest of {len(report['runs']) // 2} runs each:")
    print(f"{'':32}{'without':>12}{'with':>12}{'ratio':>8}  target")
    names = {
        "ingestion": "records ingestion (records/s)",
        "redact": "Redact API (req/s)",
        "read": "read-back (req/s)",
    }
    for key, name in names.items():
        without, with_ = report[key]["without"], report[key]["with"]
        ratio = with_ / without
        met = "MET" if ratio >= TARGETS[key] else "MISSED"
        print(f"{name:32}{without:12,.0f}{with_:12,.0f}{ratio:8.2f}  >= {TARGETS[key]}x {met}")
    subject = report["subject"]
    seconds = subject["with"]["seconds"]
    print(
        f"{'erase a number, 10,000 records':32}{subject['without']['seconds']:11.2f}s"
        f"{seconds:11.2f}s{'':8}  < 1 s {'MET' if seconds < 1 else 'MISSED'}"
        f"  (run alone: {subject['with']['run_seconds']:.2f} s)"
    )
    rotation = report["rotation"]
    rate = rotation["rewrapped"] / rotation["seconds"]
    print(
        f"{'key rotation (keys/s)':32}{'':12}{rate:12,.0f}{'':8}  >= 10,000 "
        f"{'MET' if rate >= 10_000 else 'MISSED'}  ({rotation['rewrapped']:,} keys)"
    )


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (BenchError, run.BenchError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
