"""Jobs as operators run them: `redact worker` processes killed and restarted, the `redact
jobs` commands, the Redis queue, and what a subject job leaves in the database files."""

from __future__ import annotations

import json
import signal
import time

import httpx
import pytest

from app.services import job_queue
from app.settings import Settings
from models import MODELS, RedactionAudit, Transaction, current_store, database
from models.jobs import RedactionJob
from tests.support import (
    PASSWORD,
    POSTGRES_URL,
    JobsClient,
    add_account,
    add_records,
    cli,
    files_containing,
    one_line_error,
    postgres_env,
    record,
    require_service,
    row,
    served,
    start,
    stop,
    store_at,
    wait_for,
)


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def store_env(request, env, tmp_path):
    """`env` with a short job lease, on a fresh SQLite store, or on PostgreSQL with its
    tables dropped (and the queue in an SQLite file)."""
    env = {**env, "REDACT_JOB_LEASE_SECONDS": "2"}
    if request.param == "sqlite":
        return env
    require_service("PostgreSQL", "127.0.0.1", 5432)
    with store_at(POSTGRES_URL):
        database.drop_tables(MODELS, safe=True)
    queue_url = f"sqlite:///{tmp_path / 'q.db'}"
    return {**env, **postgres_env(), "REDACT_QUEUE_URL": queue_url}


def seed(env, records: list[dict]) -> None:
    """acct0001 and `records` in the command's store, through the commands."""
    cli(env, "accounts", "create", "--api-key", "acct0001", "--api-secret", PASSWORD, check=True)
    records_lines = "\n".join(json.dumps(r) for r in records)
    cli(env, "transactions", "load", "-", stdin=records_lines, check=True)


def job_row(env, job_id: str) -> RedactionJob:
    """The job as the command's store holds it now."""
    with store_at(env["DATABASE_URL"]):
        return RedactionJob.get(RedactionJob.id == job_id)


@pytest.mark.slow
def test_a_worker_killed_mid_job_is_resumed_and_every_record_redacted_once(store_env, tmp_path):
    env = store_env
    named, about = 2000, 500
    seed(
        env,
        [record(f"N{n:05d}") for n in range(named)]
        + [record(f"S{n:05d}", to="447700900555") for n in range(about)],
    )
    objects = "\n".join(json.dumps({"id": f"N{n:05d}", "product": "sms"}) for n in range(named))
    created = cli(
        env,
        "jobs",
        "create",
        "--account",
        "acct0001",
        "--transactions",
        "-",
        "--subject",
        "447700900555",
        stdin=objects,
    )
    assert created.returncode == 0, created.stderr
    job_id = json.loads(created.stdout)["id"]
    env = {**env, "REDACT_JOB_BATCH_SIZE": "10"}

    worker = start(env, tmp_path, "worker", "--threads", "2")
    try:
        wait_for(lambda: job_row(env, job_id).status == "ready", what="validation")
        cli(env, "jobs", "run", job_id, check=True)
        wait_for(lambda: job_row(env, job_id).redacted >= 300, interval=0.01, what="300 redacted")
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
    stopped = job_row(env, job_id)
    assert stopped.status == "redacting"
    assert 300 <= stopped.redacted < named + about, "the kill came too late to test resuming"

    time.sleep(2.5)  # the dead worker's lease expires
    worker = start(env, tmp_path, "worker", "--threads", "2")
    try:
        wait_for(lambda: job_row(env, job_id).status == "succeeded", what="the job to finish")
    finally:
        stop(worker)

    done = job_row(env, job_id)
    assert (done.redacted, done.already_redacted, done.skipped) == (named + about, 0, 0)
    with store_at(env["DATABASE_URL"]):
        audited = [
            a.transaction_id
            for a in RedactionAudit.select().where(RedactionAudit.trace_id == job_id)
        ]
        assert len(audited) == len(set(audited)) == named + about
        assert Transaction.select().where(Transaction.redacted_at.is_null()).count() == 0
        if env["DATABASE_URL"].startswith("sqlite"):
            assert database.execute_sql("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_jobs_commands_print_json_and_fail_in_one_line(env):
    seed(env, [record("T1"), record("T2")])
    created = cli(
        env,
        "jobs",
        "create",
        "--account",
        "acct0001",
        "--transactions",
        "-",
        "--description",
        "by the operator",
        stdin='{"id": "T1", "product": "sms"}\n',
    )
    job = json.loads(created.stdout)
    assert (job["status"], job["description"]) == ("validating", "by the operator")

    listed = json.loads(cli(env, "jobs", "list", "--account", "acct0001").stdout)
    assert [j["id"] for j in listed["data"]] == [job["id"]]
    early = cli(env, "jobs", "run", job["id"])  # still validating: no worker has run
    assert early.returncode == 1
    assert early.stderr.strip() == (
        f"error: cannot run redaction job {job['id']} in status "
        "'validating'; run needs status ready"
    )

    # a worker validates it (here, the queue drained in this process); `run --wait` then
    # does the work in the command itself
    queue = job_queue(Settings.from_env(env))
    with store_at(env["DATABASE_URL"]):
        assert queue.drain() >= 1
    ran = cli(env, "jobs", "run", job["id"], "--wait")
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["status"] == "succeeded"
    shown = json.loads(cli(env, "jobs", "show", job["id"], "--objects").stdout)
    assert shown["objects"]["transactions"] == [{"id": "T1", "product": "sms", "type": "outbound"}]
    assert shown["counts"]["redacted"] == 1

    second = json.loads(
        cli(env, "jobs", "create", "--account", "acct0001", "--subject", "447700900002").stdout
    )
    with store_at(env["DATABASE_URL"]):
        queue.drain()
    canceled = cli(env, "jobs", "cancel", second["id"])
    assert json.loads(canceled.stdout)["status"] == "canceling"

    for args, fragment in [
        (("jobs", "show", "rj_nope"), "no redaction job 'rj_nope'"),
        (
            ("jobs", "create", "--account", "nobody", "--subject", "447700900002"),
            "no account 'nobody'",
        ),
        (("jobs", "create", "--account", "acct0001"), "give --transactions"),
        (("jobs", "create", "--account", "acct0001", "--subject", "call me"), "not a phone number"),
    ]:
        one_line_error(cli(env, *args), fragment)


def test_jobs_create_refuses_a_nul_in_an_id_in_one_line(store_env):
    """As the API's body validator does (PostgreSQL's text cannot hold one): nothing made."""
    seed(store_env, [record("T1")])
    lines = '{"id": "T1", "product": "sms"}\n{"id": "T\\u0000", "product": "sms"}\n'
    refused = cli(
        store_env, "jobs", "create", "--account", "acct0001", "--transactions", "-", stdin=lines
    )
    one_line_error(refused, "a NUL character is not allowed")
    listed = json.loads(cli(store_env, "jobs", "list", "--account", "acct0001").stdout)
    assert listed["data"] == []


@pytest.mark.redis
@pytest.mark.slow
def test_jobs_run_through_a_redis_queue(make_app, database_url, redis_url):
    app = make_app(database_url, queue_url=redis_url)
    with app.test_client() as client:
        jobs = JobsClient(client, add_account("acct0001"), app.services.queue)
        add_records(record("T1"), record("S1", **{"from": "447700900777"}))
        job = jobs.ready(["T1"], ["447700900777"])
        jobs.action(job["id"], "run", expect=202)
        assert app.services.queue.huey.pending_count() == 1
        jobs.drain()
        done = jobs.get(job["id"])
        assert (done["status"], done["counts"]["redacted"]) == ("succeeded", 2)


def test_nothing_in_the_database_files_leads_back_to_an_erased_subject(make_app, tmp_path):
    db_path = tmp_path / "redact.db"
    app = make_app(f"sqlite:///{db_path}")  # the queue beside it, as by default
    number = "447700911235"
    with app.test_client() as client:
        jobs = JobsClient(client, add_account("acct0001"), app.services.queue)
        add_records(
            record("S1", to=number, text="MARKER-51 " * 40),
            record("S2", product="voice", **{"from": "+44 7700 911235"}),
            record("S3", product="messages", to=number, text="MARKER-51 long " * 900),
            record("KEEP", to="447700900999", text="KEEP-ME-77"),
        )
        with database.connection_context():
            key_hash = current_store().subject_key.hash(number).encode()
        markers = [number.encode(), b"7700 911235", b"MARKER-51", key_hash]
        for marker in markers[:3]:  # sealed: never on disk in clear
            assert files_containing(db_path, marker) == [], marker
        assert files_containing(db_path, key_hash) == ["redact.db"]  # the number's index

        job = jobs.ready(subjects=[number], description="erasure request")
        jobs.action(job["id"], "run", expect=202)
        jobs.drain()
        assert jobs.get(job["id"])["status"] == "succeeded"
        for marker in markers:
            assert files_containing(db_path, marker) == [], marker
        assert row("KEEP").body == "KEEP-ME-77"
    assert files_containing(db_path, b"KEEP-ME-77") == []


@pytest.mark.slow
def test_serve_alone_runs_jobs(env, tmp_path):
    """One command does everything: `redact serve` validates and runs jobs itself."""
    auth = ("demo0001", "demo-secret-0001")
    with served(env, tmp_path, "--demo", timeout=30) as (_, base):
        jobs_url = f"{base}/v1/redact/jobs"
        created = httpx.post(
            jobs_url,
            auth=auth,
            json={
                "objects": {
                    "transactions": [
                        {"id": "0A0000000DEMO0001", "product": "sms"},
                        {"id": "63f61863-4a51-4f6b-86e1-46edebcf9356", "product": "voice"},
                    ]
                }
            },
        )
        assert created.status_code == 200, created.text
        job = created.json()

        def status():
            return httpx.get(f"{jobs_url}/{job['id']}", auth=auth).json()["status"]

        wait_for(lambda: status() != "validating", timeout=30, what="validation")
        assert status() == "ready"
        assert httpx.post(f"{jobs_url}/{job['id']}/run", auth=auth).status_code == 202
        wait_for(lambda: status() == "succeeded", timeout=30, what="the job to finish")
        done = httpx.get(f"{jobs_url}/{job['id']}", auth=auth).json()
        assert done["counts"]["redacted"] == 2
