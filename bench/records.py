"""Records in and out on SQLite: storing through the records API beside a plain INSERT of
the same rows, and the Auto-redact retention pass beside a plain UPDATE of the same rows.

1. Ingestion. The service runs as `redact serve` runs it (`python -m app.cli serve`, its
   limiter counting but never refusing), on a fresh SQLite file with one account made by
   `redact accounts create`. A client with --concurrency requests in flight (httpx,
   asyncio, bodies encoded before the clock starts) sends --records distinct SMS records
   (default 100,000) to `POST /v1/redact/records`, 1,000 per request; the time runs from
   the first send to the last answer. Every answer must be a 200 with `stored` 1,000,
   and the file must hold every record at the end. Beside it, the same rows go into a
   fresh file made by the models, by sqlite3's executemany, 1,000 per transaction, the
   service's pragmas, the keyed number hashes computed as the service does: the floor of
   storing them. Target: >= 20,000 records/s through the API.

2. Retention. One file holds --retention-records SMS records (default 1,000,000) of one
   account, created 400 days ago, stored as `redact transactions load` stores them
   (sealed, a data key each in the key store beside the file), and the account's SMS
   policy is `after` 30 days. On a
   copy, one plain UPDATE in one transaction scrubs them (as bench/jobs.py's does, number
   hashes cleared too). On another copy a child process runs the retention pass
   (`models.erasure.retention.run_retention`, batches of --batch, as `redact retention run` with
   REDACT_JOB_BATCH_SIZE): batch by batch, each atomic and audited. The child reports its
   peak memory (VmHWM: ru_maxrss would include this script's own peak, see peak_rss_mb).
   Target: retention >= 0.35x the UPDATE's records/s. --batch takes a comma-separated
   list (e.g. 2000,5000): one pass on a fresh copy each.

Both with the service's pragmas (rollback journal, secure_delete, synchronous=full).

    python bench/records.py [--records N] [--retention-records N] [--json PATH]
                            [--only ingestion|retention] [--batch 2000[,5000]]
                            [--concurrency 4] [--workers 2] [--profile DIR]

--profile DIR writes cProfile statistics of each retention child to DIR (the profiler
slows the child: its figures are then not the pass's own).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime
import json
import os
import pathlib
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

BENCH_DIR = pathlib.Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH_DIR))

# httpx and bench/run.py (the server's start and stop) are imported where the ingestion
# uses them, so that the retention child's memory is the pass's own.

SUBJECT_KEY = "bench-subject-key-000000000000"
API_KEY = "bench0001"
API_SECRET = "bench-secret-0001"
AUTH_HEADER = "Basic " + base64.b64encode(f"{API_KEY}:{API_SECRET}".encode()).decode()
RECORDS_PATH = "/v1/redact/records"
PER_REQUEST = 1000
INGESTION_TARGET = 20_000  # records/s through the API
RETENTION_TARGET = 0.35  # retention records/s over the plain UPDATE's
RETENTION_DAYS = 30
AGE_DAYS = 400
BUILD_CHUNK = 50_000

INSERT = (
    'INSERT INTO "transaction" (id, api_key, product, direction, created_at, sender, '
    "recipient, body, details, sender_key, recipient_key) "
    "VALUES (?, ?, 'sms', 'outbound', ?, ?, ?, ?, ?, ?, ?)"
)


class BenchError(Exception):
    """The benchmark cannot go on (a server did not start, a check failed)."""


def record_id(n: int) -> str:
    return f"0B{n:015X}"


def record(n: int) -> dict:
    """The n-th SMS record, as a client sends it."""
    return {
        "id": record_id(n),
        "product": "sms",
        "type": "outbound",
        "created_at": f"2026-01-01T{n // 3600 % 24:02d}:{n // 60 % 60:02d}:{n % 60:02d}Z",
        "from": "447700900001",
        "to": f"4477009{n % 100_000:05d}",
        "text": f"hello there, your code is {n % 10_000:04d}. Do not share it.",
        "status": "delivered",
    }


def sqlite_url(path: pathlib.Path) -> str:
    return f"sqlite:///{path}"


def service_pragmas(connection: sqlite3.Connection) -> None:
    from models.store.state import SQLITE_PRAGMAS

    for name, value in SQLITE_PRAGMAS.items():  # the service's own
        connection.execute(f"PRAGMA {name}={value}")


# ----------------------------------------------------------------------------- ingestion


def batches(count: int) -> list[list[dict]]:
    return [
        [record(n) for n in range(start, min(start + PER_REQUEST, count))]
        for start in range(0, count, PER_REQUEST)
    ]


def create_account(env: dict[str, str]) -> None:
    """The account, as an operator makes one: `redact accounts create` (tables too)."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
            "accounts",
            "create",
            "--api-key",
            API_KEY,
            "--api-secret",
            API_SECRET,
        ],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"redact accounts create failed:\n{done.stdout}{done.stderr}")


async def send_all(base_url: str, bodies: list[bytes], concurrency: int) -> tuple[float, list]:
    """POST every body with `concurrency` requests in flight; (seconds from the first send
    to the last answer, [(status, answer)] in the order of `bodies`)."""
    import httpx

    headers = {"authorization": AUTH_HEADER, "content-type": "application/json"}
    answers: list = [None] * len(bodies)
    pending = iter(range(len(bodies)))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=120) as client:
        # Untimed: the credentials checked (scrypt, then cached), a connection per sender.
        probe = f"{RECORDS_PATH}/warm-up?product=sms"
        for round_ in (1, concurrency):
            warm = await asyncio.gather(
                *(client.get(probe, headers=headers) for _ in range(round_))
            )
            if any(response.status_code != 404 for response in warm):
                raise BenchError(f"the warm-up read was answered {warm[0].status_code}")

        async def sender() -> None:
            for index in pending:
                response = await client.post(RECORDS_PATH, content=bodies[index], headers=headers)
                answers[index] = (response.status_code, response.text)

        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return elapsed, answers


def through_api(
    work: pathlib.Path, records: list[list[dict]], concurrency: int, workers: int
) -> dict:
    import run

    path = work / "api.db"
    env = {
        "DATABASE_URL": sqlite_url(path),
        "REDACT_SUBJECT_KEY": SUBJECT_KEY,
        "REDACT_RATE_LIMIT": "1000000/second",
    }
    create_account(env)
    # `serve --workers N` makes a directory for the workers' metrics under TMPDIR (even
    # when PROMETHEUS_MULTIPROC_DIR is set): here, it goes with the rest.
    env["TMPDIR"] = str(work)
    bodies = [json.dumps({"records": batch}).encode() for batch in records]
    port = run.free_port()
    log_path = work / "server.log"
    command = [sys.executable, "-m", "app.cli", "serve", "--port", str(port)]
    command += ["--workers", str(workers)]
    try:
        with run.serve(command, port, env, log_path) as served:
            elapsed, answers = asyncio.run(send_all(served.base_url, bodies, concurrency))
    except run.BenchError as exc:
        raise BenchError(str(exc)) from None
    bad = [
        (index, status, text[:300])
        for index, ((status, text), batch) in enumerate(zip(answers, records, strict=True))
        if status != 200 or json.loads(text).get("stored") != len(batch)
    ]
    if bad:
        raise BenchError(
            f"{len(bad)} of {len(answers)} answers were not 200 with every record stored, "
            f"e.g. {bad[:3]}\n{run.log_tail(log_path)}"
        )
    connection = sqlite3.connect(path)
    stored = connection.execute('SELECT count(*) FROM "transaction"').fetchone()[0]
    connection.close()
    return {"seconds": elapsed, "stored": stored, "path": path}


def plain_insert(work: pathlib.Path, records: list[list[dict]]) -> dict:
    """The same rows by executemany into a fresh file the models made, 1,000 a commit."""
    from models import Account, create_tables, database, open_store
    from models.store.keys import SubjectKey

    path = work / "insert.db"
    db = open_store(sqlite_url(path), subject_key=SUBJECT_KEY.encode()).database
    create_tables()
    with database.connection_context():
        Account.register(API_KEY, API_SECRET)
    db.close_all()
    key = SubjectKey(SUBJECT_KEY.encode())
    encode = json.JSONEncoder(separators=(",", ":")).encode  # as the JSON column writes
    connection = sqlite3.connect(path, isolation_level=None)
    service_pragmas(connection)
    started = time.perf_counter()
    for batch in records:
        rows = [
            (
                item["id"],
                API_KEY,
                item["created_at"].replace("T", " ").rstrip("Z"),
                item["from"],
                item["to"],
                item["text"],
                encode({"status": item["status"]}),
                key.hash(item["from"]),
                key.hash(item["to"]),
            )
            for item in batch
        ]
        connection.execute("BEGIN IMMEDIATE")
        connection.executemany(INSERT, rows)
        connection.execute("COMMIT")
    elapsed = time.perf_counter() - started
    stored = connection.execute('SELECT count(*) FROM "transaction"').fetchone()[0]
    connection.close()
    return {"seconds": elapsed, "stored": stored, "path": path}


def differing_rows(api_path: pathlib.Path, insert_path: pathlib.Path) -> int:
    """Rows of one file that the other does not hold the same (every stored column but the
    personal ones, which the service seals under keys of its own: the plain insert is the
    floor of storing in clear)."""
    columns = "id, api_key, product, direction, created_at, redacted_at, sender_key, recipient_key"
    connection = sqlite3.connect(api_path)
    connection.execute("ATTACH DATABASE ? AS other", (str(insert_path),))
    differing = sum(
        connection.execute(
            f'SELECT count(*) FROM (SELECT {columns} FROM {a}."transaction" '
            f'EXCEPT SELECT {columns} FROM {b}."transaction")'
        ).fetchone()[0]
        for a, b in (("main", "other"), ("other", "main"))
    )
    connection.close()
    return differing


def ingestion(args, work: pathlib.Path) -> dict:
    records = batches(args.records)
    print(
        f"ingestion: {args.records:,} records, {len(records)} requests, "
        f"{args.concurrency} in flight, {args.workers} worker(s) ...",
        flush=True,
    )
    api = through_api(work, records, args.concurrency, args.workers)
    insert = plain_insert(work, records)
    for name, result in (("API", api), ("plain insert", insert)):
        if result["stored"] != args.records:
            raise BenchError(f"{name}: {result['stored']:,} rows stored, {args.records:,} sent")
    differing = differing_rows(api["path"], insert["path"])
    if differing:
        raise BenchError(f"the API and the plain insert stored {differing} rows differently")
    api_rate = args.records / api["seconds"]
    insert_rate = args.records / insert["seconds"]
    return {
        "records": args.records,
        "requests": len(records),
        "concurrency": args.concurrency,
        "workers": args.workers,
        "api_seconds": api["seconds"],
        "api_records_per_second": api_rate,
        "api_ms_per_request": api["seconds"] * 1000 / len(records),
        "plain_insert_seconds": insert["seconds"],
        "plain_insert_records_per_second": insert_rate,
        "ratio": api_rate / insert_rate,
        "target_records_per_second": INGESTION_TARGET,
        "target_met": api_rate >= INGESTION_TARGET,
    }


def print_ingestion(report: dict) -> None:
    met = "MET" if report["target_met"] else "MISSED"
    print(f"""
ingestion                   {report["records"]:>12,} records, {report["requests"]} requests \
of {PER_REQUEST:,}, {report["concurrency"]} in flight, {report["workers"]} worker(s)
plain INSERT (executemany)  {report["plain_insert_records_per_second"]:>12,.0f} records/s   \
{report["plain_insert_seconds"]:.2f} s
POST /v1/redact/records     {report["api_records_per_second"]:>12,.0f} records/s   \
{report["api_seconds"]:.2f} s, {report["api_ms_per_request"]:.1f} ms a request
ratio API/INSERT            {report["ratio"]:>12.2f}
target >= {INGESTION_TARGET:,} records/s through the API: {met}
every answer 200 with stored {PER_REQUEST:,}; both files hold the same rows""")


# ----------------------------------------------------------------------------- retention


def build_database(path: pathlib.Path, count: int, created: datetime.datetime) -> None:
    """Tables by the models, then the account, its records stored as `redact transactions
    load` stores them (sealed, a data key each, in the key store beside the file; not
    measured) and its SMS policy: `after` RETENTION_DAYS days."""
    from models import Account, create_tables, database, load_records, open_store
    from models.erasure.policies import set_policies

    store = open_store(sqlite_url(path), subject_key=SUBJECT_KEY.encode())
    create_tables()
    stamp = created.isoformat()
    with database.connection_context():
        Account.register(API_KEY, API_SECRET)
        for start in range(0, count, BUILD_CHUNK):
            load_records(
                json.dumps(
                    {
                        **record(n),
                        "api_key": API_KEY,
                        "created_at": stamp,
                        "from": "447700900001",
                        "to": f"4477{n:08d}",
                    }
                )
                for n in range(start, min(start + BUILD_CHUNK, count))
            )
        set_policies(
            API_KEY,
            {"sms": {"auto_redact": "after", "after_days": RETENTION_DAYS}},
            now=datetime.datetime.now(datetime.UTC),
            actor="bench",
        )
    store.close()


def copy_store(source: pathlib.Path, copy: pathlib.Path) -> None:
    """The store's file and the files the store keeps beside it (its key store and that
    store's KEKs, its subject and signing keys)."""
    from models.store.kek import kek_file
    from models.store.keys import signing_key_file, subject_key_file
    from models.store.keystore import keystore_file

    def beside(path: str) -> list[str]:
        return [
            path,
            keystore_file(path),
            kek_file(keystore_file(path)),
            subject_key_file(path),
            signing_key_file(path),
        ]

    for file, copied in zip(beside(str(source)), beside(str(copy)), strict=True):
        if os.path.exists(file):
            shutil.copy(file, copied)


def plain_update(path: pathlib.Path) -> float:
    """One UPDATE of every record past retention, in one transaction."""
    connection = sqlite3.connect(path, isolation_level=None)
    service_pragmas(connection)
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    cutoff = now - datetime.timedelta(days=RETENTION_DAYS)
    started = time.perf_counter()
    connection.execute("BEGIN IMMEDIATE")
    connection.execute(
        "UPDATE \"transaction\" SET sender='REDACTED', recipient='REDACTED', "
        "body='REDACTED', details=json_object('status', json_extract(details, '$.status'), "
        "'price', json_extract(details, '$.price')), sender_key=NULL, recipient_key=NULL, "
        "redacted_at=? WHERE api_key=? AND product='sms' AND redacted_at IS NULL "
        "AND created_at <= ?",
        (now.isoformat(sep=" "), API_KEY, cutoff.isoformat(sep=" ")),
    )
    connection.execute("COMMIT")
    elapsed = time.perf_counter() - started
    connection.close()
    return elapsed


def peak_rss_mb() -> float:
    """This process's peak resident memory. Linux's VmHWM where there is one: ru_maxrss
    carries over the parent's peak across fork and exec (a child spawned by a parent of
    300 MB reports at least 300 MB), so it would measure this script, not the pass."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def retention_child(path: str, batch: int, profile: str | None) -> None:
    """The retention pass, as the worker runs it; prints its figures as JSON."""
    from models import database, open_store, utcnow
    from models.erasure.retention import run_retention

    open_store(sqlite_url(pathlib.Path(path)), subject_key=SUBJECT_KEY.encode())

    def run():
        return run_retention(
            clock=utcnow,
            min_age_seconds=3600,
            batch_size=batch,
            owner="bench",
            budget_seconds=None,
            lease_seconds=60,
        )

    with database.connection_context():
        started = time.perf_counter()
        if profile:
            import cProfile

            profiler = cProfile.Profile()
            report = profiler.runcall(run)
            profiler.dump_stats(profile)
        else:
            report = run()
        elapsed = time.perf_counter() - started
    print(
        json.dumps(
            {
                "seconds": elapsed,
                "redacted": report.redacted,
                "held": report.held,
                "finished": report.finished,
                "peak_rss_mb": peak_rss_mb(),
                "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def retention_pass(path: pathlib.Path, batch: int, profile: pathlib.Path | None) -> dict:
    command = [sys.executable, __file__, "--retention-child", str(path), "--batch", str(batch)]
    if profile:
        command += ["--profile", str(profile / f"retention-batch{batch}.pstats")]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BenchError(f"the retention child failed:\n{done.stderr}")
    return json.loads(done.stdout)


def check_redacted(path: pathlib.Path, count: int) -> None:
    connection = sqlite3.connect(path)
    left = connection.execute(
        'SELECT count(*) FROM "transaction" WHERE body != ? OR sender_key IS NOT NULL '
        "OR redacted_at IS NULL",
        ("REDACTED",),
    ).fetchone()[0]
    audited = connection.execute(
        "SELECT count(*) FROM redaction_audit WHERE source = 'retention'"
    ).fetchone()[0]
    connection.close()
    if left or audited != count:
        raise BenchError(f"{left} records unscrubbed, {audited} audit entries of {count:,}")


def retention(args, work: pathlib.Path) -> dict:
    n = args.retention_records
    created = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=AGE_DAYS)
    print(f"retention: building {n:,} records ...", flush=True)
    source = work / "retention.db"
    build_database(source, n, created)
    update_db = work / "update.db"
    copy_store(source, update_db)
    update_seconds = plain_update(update_db)
    check_redacted_update = sqlite3.connect(update_db)
    updated = check_redacted_update.execute(
        'SELECT count(*) FROM "transaction" WHERE body = ? AND sender_key IS NULL',
        ("REDACTED",),
    ).fetchone()[0]
    check_redacted_update.close()
    update_db.unlink()
    if updated != n:
        raise BenchError(f"the plain UPDATE scrubbed {updated:,} of {n:,}")
    print(f"plain UPDATE: {update_seconds:.1f} s", flush=True)
    update_rate = n / update_seconds
    passes = []
    for batch in args.batch:
        copy = work / f"retention-{batch}.db"
        copy_store(source, copy)
        result = retention_pass(copy, batch, args.profile)
        if (result["redacted"], result["held"], result["finished"]) != (n, 0, True):
            raise BenchError(f"the pass did not redact every record: {result}")
        check_redacted(copy, n)
        copy.unlink()
        rate = n / result["seconds"]
        print(f"retention, batch {batch}: {result['seconds']:.1f} s", flush=True)
        passes.append(
            {
                "batch": batch,
                "seconds": result["seconds"],
                "records_per_second": rate,
                "ratio": rate / update_rate,
                "target_met": rate / update_rate >= RETENTION_TARGET,
                "peak_rss_mb": result["peak_rss_mb"],
                "ru_maxrss_mb": result["ru_maxrss_mb"],
            }
        )
    return {
        "records": n,
        "plain_update_seconds": update_seconds,
        "plain_update_records_per_second": update_rate,
        "passes": passes,
        "target_ratio": RETENTION_TARGET,
        "profiled": bool(args.profile),
    }


def print_retention(report: dict) -> None:
    print(f"""
retention                   {report["records"]:>12,} records, created {AGE_DAYS} days ago, \
policy after {RETENTION_DAYS} days
plain UPDATE                {report["plain_update_records_per_second"]:>12,.0f} records/s   \
{report["plain_update_seconds"]:.1f} s""")
    for one in report["passes"]:
        met = "MET" if one["target_met"] else "MISSED"
        print(
            f"retention, batch {one['batch']:<11,}{one['records_per_second']:>12,.0f} records/s"
            f"   {one['seconds']:.1f} s, ratio {one['ratio']:.2f} "
            f"(target >= {RETENTION_TARGET}: {met}), peak memory {one['peak_rss_mb']:.0f} MB"
        )
    print("every record redacted once and audited; the UPDATE's copy scrubbed the same rows")
    if report["profiled"]:
        print("(profiled under cProfile: the retention figures are slowed by the profiler)")


# ---------------------------------------------------------------------------------- main


def batch_sizes(text: str) -> list[int]:
    sizes = [int(part) for part in text.split(",") if part.strip()]
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("batch sizes are whole numbers >= 1")
    return sizes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000, help="ingestion records")
    parser.add_argument("--retention-records", type=int, default=1_000_000)
    parser.add_argument("--only", choices=("ingestion", "retention"))
    parser.add_argument(
        "--batch", type=batch_sizes, default=[2000], help="retention batch sizes, e.g. 2000,5000"
    )
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight")
    parser.add_argument(
        "--workers", type=int, default=2, help="`redact serve --workers` (2: as the Procfile)"
    )
    parser.add_argument("--profile", type=pathlib.Path, help="cProfile the retention child")
    parser.add_argument("--json", type=pathlib.Path)
    parser.add_argument("--retention-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.retention_child:
        retention_child(args.retention_child, args.batch[0], args.profile)
        return 0
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
        args.profile = args.profile.resolve()

    report: dict = {}
    try:
        if args.only in (None, "ingestion"):
            with tempfile.TemporaryDirectory(prefix="redact-records-bench-") as workdir:
                report["ingestion"] = ingestion(args, pathlib.Path(workdir))
        if args.only in (None, "retention"):
            with tempfile.TemporaryDirectory(prefix="redact-retention-bench-") as workdir:
                report["retention"] = retention(args, pathlib.Path(workdir))
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if "ingestion" in report:
        print_ingestion(report["ingestion"])
    if "retention" in report:
        print_retention(report["retention"])
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
