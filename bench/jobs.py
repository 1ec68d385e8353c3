"""A bulk redaction job against a plain SQL UPDATE of the same rows, on SQLite.

Two copies of one database file hold the same --records SMS records (default 1,000,000)
of one account. On the first, one statement in one transaction scrubs them all, as a
hand-written clean-up would:

    UPDATE transaction SET sender=..., recipient=..., body=..., redacted_at=... WHERE ...

On the second, a child process does what a job does, through the job code itself: it
creates a job naming every record (streamed from a JSON Lines file, as `redact jobs create
--transactions` reads it), validates it and runs it, batch by batch, each batch atomic
and audited. Both run with the service's pragmas (rollback journal, secure_delete,
synchronous=full). The child reports its peak memory (ru_maxrss).

Printed: records/s of each, the ratio job/UPDATE (target >= 0.25) for the run alone and
for create + validate + run, and the job's peak memory (target < 200 MB).

    python bench/jobs.py [--records 1000000] [--batch 2000] [--json PATH]
"""

from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SUBJECT_KEY = b"bench-subject-key-000000000000"
API_KEY = "bench0001"
CREATED_AT = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def record_id(n: int) -> str:
    return f"0B{n:015X}"


def build_database(path: pathlib.Path, count: int) -> None:
    """Tables by the models; rows by sqlite3's executemany (loading is not measured)."""
    from models import Account, create_tables, database, open_store
    from models.store.keys import SubjectKey

    db = open_store(f"sqlite:///{path}", subject_key=SUBJECT_KEY).database
    create_tables()
    with database.connection_context():
        Account.register(API_KEY, "bench-secret-0001")
    db.close_all()
    key = SubjectKey(SUBJECT_KEY)
    created = CREATED_AT.replace(tzinfo=None).isoformat(sep=" ")
    connection = sqlite3.connect(path)
    with connection:
        for start in range(0, count, 50_000):
            connection.executemany(
                'INSERT INTO "transaction" (id, api_key, product, direction, created_at, '
                "sender, recipient, body, details, redacted_at, sender_key, recipient_key) "
                "VALUES (?, ?, 'sms', 'outbound', ?, ?, ?, ?, ?, NULL, ?, ?)",
                (
                    (
                        record_id(n),
                        API_KEY,
                        created,
                        "447700900001",
                        f"4477{n:08d}",
                        f"Your code is {n % 10000:04d}. Do not share it.",
                        '{"status":"delivered","price":"0.0333"}',
                        key.hash("447700900001"),
                        key.hash(f"4477{n:08d}"),
                    )
                    for n in range(start, min(start + 50_000, count))
                ),
            )
    connection.close()


def plain_update(path: pathlib.Path) -> float:
    """One UPDATE of every record, in one transaction, with the service's pragmas."""
    connection = sqlite3.connect(path, isolation_level=None)
    from models.store.state import SQLITE_PRAGMAS

    for name, value in SQLITE_PRAGMAS.items():  # the service's own
        connection.execute(f"PRAGMA {name}={value}")
    started = time.perf_counter()
    connection.execute("BEGIN IMMEDIATE")
    connection.execute(
        "UPDATE \"transaction\" SET sender='REDACTED', recipient='REDACTED', "
        "body='REDACTED', details=json_object('status', json_extract(details, '$.status'), "
        "'price', json_extract(details, '$.price')), sender_key=NULL, recipient_key=NULL, "
        "redacted_at=? WHERE api_key=? AND redacted_at IS NULL",
        (datetime.datetime.now(datetime.UTC).replace(tzinfo=None).isoformat(sep=" "), API_KEY),
    )
    connection.execute("COMMIT")
    elapsed = time.perf_counter() - started
    connection.close()
    return elapsed


def child(path: str, ids_path: str, batch: int) -> None:
    """The job, as the service does it; prints its timings and peak memory as JSON."""
    from models import database, open_store
    from models.jobs import TransactionRef
    from models.jobs.lease import WorkConfig
    from models.jobs.lifecycle import create_job
    from models.worker.queue import advance

    open_store(f"sqlite:///{path}", subject_key=SUBJECT_KEY)
    config = WorkConfig(min_age_seconds=3600, batch_size=batch, lease_seconds=60)

    def clock():
        return datetime.datetime.now(datetime.UTC)

    def refs():
        with open(ids_path, encoding="utf-8") as lines:
            for line in lines:
                item = json.loads(line)
                yield TransactionRef(item["id"], item["product"])

    timings = {}
    with database.connection_context():
        started = time.perf_counter()
        job, _ = create_job(
            api_key=API_KEY, transactions=refs(), subjects=(), now=clock(), max_unfinished=10
        )
        timings["create"] = time.perf_counter() - started

        started = time.perf_counter()
        advance(job.id, owner="bench", clock=clock, config=config)  # validates
        job = type(job).get_by_id(job.seq)
        timings["validate"] = time.perf_counter() - started
        assert job.status == "ready", (job.status, job.validation_errors)

        from models.jobs.lifecycle import move

        job = move(job, "run")
        started = time.perf_counter()
        advance(job.id, owner="bench", clock=clock, config=config)  # runs
        timings["run"] = time.perf_counter() - started
        job = type(job).get_by_id(job.seq)
    print(
        json.dumps(
            {
                **timings,
                "status": job.status,
                "redacted": job.redacted,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--json", type=pathlib.Path)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child, args.batch)
        return 0

    with tempfile.TemporaryDirectory(prefix="redact-jobs-bench-") as workdir:
        work = pathlib.Path(workdir)
        print(f"building {args.records:,} records ...", flush=True)
        build_database(work / "job.db", args.records)
        shutil.copy(work / "job.db", work / "update.db")
        ids = work / "ids.jsonl"
        with ids.open("w") as out:
            for n in range(args.records):
                out.write(f'{{"id": "{record_id(n)}", "product": "sms"}}\n')

        update_seconds = plain_update(work / "update.db")
        print(f"plain UPDATE: {update_seconds:.1f} s", flush=True)
        result = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                str(work / "job.db"),
                str(ids),
                "--batch",
                str(args.batch),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            print(result.stderr, file=sys.stderr)
            return 1
        job = json.loads(result.stdout)
        if (job["status"], job["redacted"]) != ("succeeded", args.records):
            print(f"the job did not redact every record: {job}", file=sys.stderr)
            return 1
        check = sqlite3.connect(work / "job.db")
        left = check.execute(
            'SELECT count(*) FROM "transaction" WHERE body != ?', ("REDACTED",)
        ).fetchone()[0]
        audited = check.execute("SELECT count(*) FROM redaction_audit").fetchone()[0]
        check.close()
        if left or audited != args.records:
            print(f"{left} records unscrubbed, {audited} audit entries", file=sys.stderr)
            return 1

    n = args.records
    total = job["create"] + job["validate"] + job["run"]
    report = {
        "records": n,
        "batch": args.batch,
        "plain_update_seconds": update_seconds,
        "plain_update_records_per_second": n / update_seconds,
        "job_create_seconds": job["create"],
        "job_validate_seconds": job["validate"],
        "job_run_seconds": job["run"],
        "job_run_records_per_second": n / job["run"],
        "job_total_records_per_second": n / total,
        "ratio_run": update_seconds / job["run"],
        "ratio_total": update_seconds / total,
        "job_peak_rss_mb": job["peak_rss_mb"],
    }
    print(f"""
records                     {n:>12,}
plain UPDATE                {report["plain_update_records_per_second"]:>12,.0f} records/s
job run                     {report["job_run_records_per_second"]:>12,.0f} records/s   \
ratio {report["ratio_run"]:.2f} (target >= 0.25)
job create+validate+run     {report["job_total_records_per_second"]:>12,.0f} records/s   \
ratio {report["ratio_total"]:.2f}
  create {job["create"]:.1f} s, validate {job["validate"]:.1f} s, run {job["run"]:.1f} s
job peak memory             {job["peak_rss_mb"]:>12.0f} MB (target < 200)
every record redacted once and audited; the UPDATE's copy redacted the same rows""")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
