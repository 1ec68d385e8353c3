"""Faults, on real servers: the SQLite disk fills up, PostgreSQL crashes, Redis (limiter
and queue) dies, processes are killed. Requests get problem bodies quickly, nothing answered
204 is lost, no record is half-scrubbed, and the service recovers without a restart."""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import threading
import time

import httpx
import pytest

from app import demo
from models import RedactionAudit, Transaction, database
from tests.support import (
    FIRST_RELEASE,
    PASSWORD,
    PROBLEM_FIELDS,
    START,
    SUBJECT_KEY,
    JobsClient,
    Service,
    add_account,
    add_records,
    basic,
    cli,
    free_port,
    opened,
    postgres_env,
    record,
    require_marker,
    samples,
    scrubs_committed,
    start,
    stop,
    store_at,
    unavailable,
    value,
    wait_for,
    wait_until_serving,
)

URL = "/v1/redact/transaction"


@pytest.fixture
def small_disk(request, tmp_path):
    """A 2 MB tmpfs, mounted for the test (needs root, as CI has)."""
    require_marker(request, "root", "a mount")
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        unavailable(f"cannot mount a small disk (needs root): {mounted.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(directory) -> str:
    """Fill the file system of `directory` to the last block; returns the filler's path."""
    path = os.path.join(directory, "filler")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 4096, 512, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
    return path


@pytest.mark.root
def test_a_full_disk_fails_the_redaction_cleanly_and_service_recovers(
    make_app, small_disk, tmp_path
):
    app = make_app(
        f"sqlite:///{small_disk / 'redact.db'}", queue_url=f"sqlite:///{tmp_path / 'q.db'}"
    )
    headers = add_account("acct0001")
    body = "personal text " * 20000  # ~280 KB: its pages must go to the journal first
    add_records(record("FULL1", text=body))
    filler = fill(small_disk)

    with app.test_client() as client:
        failed = client.post(URL, json={"id": "FULL1", "product": "sms"}, headers=headers)
        assert failed.status_code == 503
        problem = failed.json()
        assert set(problem) >= PROBLEM_FIELDS
        assert int(failed.headers["Retry-After"]) >= 1
        with database.connection_context():
            untouched = opened(Transaction.get(Transaction.id == "FULL1"))
        assert (untouched.body, untouched.redacted_at) == (body, None)

        os.unlink(filler)
        done = client.post(URL, json={"id": "FULL1", "product": "sms"}, headers=headers)
        assert done.status_code == 204
        scrubs_committed()
    with database.connection_context():
        scrubbed = Transaction.get(Transaction.id == "FULL1")
    assert scrubbed.body == "REDACTED" and scrubbed.redacted_at is not None


# ------------------------------------------------------------------ database down


def _redact(client, base, headers, transaction_id) -> tuple[int, float, dict | None]:
    """POST a redaction; returns (status, seconds, problem body or None)."""
    started = time.monotonic()
    try:
        answer = client.post(
            f"{base}{URL}",
            json={"id": transaction_id, "product": "sms"},
            headers=headers,
            timeout=30,
        )
    except httpx.TransportError:
        return 0, time.monotonic() - started, None
    problem = answer.json() if answer.content else None
    return answer.status_code, time.monotonic() - started, problem


@pytest.mark.slow
@pytest.mark.postgres
def test_postgresql_stopped_mid_traffic_gives_fast_503s_then_recovers(private_postgres, tmp_path):
    """PostgreSQL crashes (immediate stop) while redactions stream in: each request is
    answered within a bounded time by a 503 problem (never a 500, never a hang); when it
    is back, the same service answers 204 again, and every redaction answered 204, before
    or after, is in the store."""
    env = {
        **postgres_env(),
        "DATABASE_URL": private_postgres.url,
        "REDACT_QUEUE_URL": f"sqlite:///{tmp_path / 'queue.db'}",
        "REDACT_RATE_LIMIT": "10000/second",
    }
    with Service(env, tmp_path, workers=1) as service:
        _provision(env, 300)
        headers = basic("acct0001")
        acknowledged, outcomes = [], []
        with httpx.Client() as client:

            def burst(ids):
                for transaction_id in ids:
                    status, seconds, problem = _redact(
                        client, service.base, headers, transaction_id
                    )
                    outcomes.append((status, seconds, problem))
                    if status == 204:
                        acknowledged.append(transaction_id)

            burst([f"T{i:04d}" for i in range(50)])
            private_postgres.stop("immediate")
            down = len(outcomes)
            burst([f"T{i:04d}" for i in range(50, 100)])
            during = outcomes[down:]
            private_postgres.start()
            recovered_at = None
            for i in range(100, 300):
                burst([f"T{i:04d}"])
                if outcomes[-1][0] == 204 and recovered_at is None:
                    recovered_at = i
            after = outcomes[down + 50 :]

    assert [o[0] for o in outcomes[:down]] == [204] * 50
    assert {status for status, _, _ in during} == {503}, during
    for _, seconds, problem in during:
        assert seconds < 5
        assert set(problem) >= PROBLEM_FIELDS, problem
        assert "Traceback" not in str(problem)
    # back without a restart: at most one failure per pooled connection that died
    assert recovered_at is not None and recovered_at < 110, recovered_at
    assert [o[0] for o in after[recovered_at - 100 :]] == [204] * (300 - recovered_at)
    assert 500 not in {status for status, _, _ in outcomes}
    _assert_redacted(env, acknowledged)


def _provision(env: dict, count: int) -> None:
    """An account and `count` SMS records T0000..., through the CLI."""
    records = "".join(json.dumps(record(f"T{i:04d}")) + "\n" for i in range(count))
    cli(env, "accounts", "create", "--api-key", "acct0001", "--api-secret", PASSWORD, check=True)
    cli(env, "transactions", "load", "-", stdin=records, check=True)


def _assert_redacted(env: dict, transaction_ids: list[str]) -> None:
    """Every id is fully scrubbed in the store and its data key destroyed; every record is
    either fully scrubbed with exactly one audit row and no key, or intact with none. A
    crash between the two steps of a redaction may leave a record whose key is destroyed
    (nothing of it opens, from any copy) while its scrub and audit never committed: never
    the other way round."""
    with store_at(env["DATABASE_URL"]) as store:
        raw = list(Transaction.select())
        destroyed = store.keystore.destroyed(t.key_id for t in raw)
        rows = {t.id: opened(t) for t in raw}
        audits = [a.transaction_id for a in RedactionAudit.select()]
    assert rows, "the store holds the records"
    for transaction_id, row in rows.items():
        erased = row.key_id in destroyed
        if row.redacted_at is not None or transaction_id in transaction_ids:
            assert erased, transaction_id
            assert (row.body, row.sender, row.recipient) == ("REDACTED",) * 3, transaction_id
            assert row.redacted_at is not None and (row.sender_key, row.recipient_key) == (
                None,
                None,
            ), transaction_id
            assert audits.count(transaction_id) == 1, transaction_id
        elif erased:  # killed between destroying the key and committing the scrub
            assert (row.body, row.sender) == ("REDACTED", "REDACTED"), transaction_id
            assert transaction_id not in audits
        else:
            assert (row.body, row.sender) == ("hello there", "447700900001"), transaction_id
            assert row.sender_key is not None and transaction_id not in audits


# ------------------------------------------------------------------------ Redis down

METRICS_TOKEN = "metrics-token-0123456789"


def _limiter_failures(client, base) -> float:
    scrape = client.get(
        f"{base}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    ).text
    return value(samples(scrape), "redact_limiter_storage_unavailable_total")


@pytest.mark.slow
@pytest.mark.redis
def test_limiter_redis_dies_then_returns(private_redis, tmp_path):
    """Stated policy: with its Redis gone the limiter fails open (requests admitted, each
    counted in a metric and logged); when Redis is back, limiting resumes by itself."""
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'redact.db'}",
        "RATELIMIT_STORAGE_URI": private_redis.url,
        "REDACT_RATE_LIMIT": "5/minute",
        "REDACT_QUEUE_URL": f"sqlite:///{tmp_path / 'queue.db'}",
        "REDACT_METRICS_TOKEN": METRICS_TOKEN,
    }
    with Service(env, tmp_path) as service, httpx.Client() as client:
        _provision(env, 0)
        headers = basic("acct0001")

        def burst():
            return [_redact(client, service.base, headers, "NOSUCH")[0] for _ in range(8)]

        assert burst() == [404] * 5 + [429] * 3
        private_redis.stop()
        assert _limiter_failures(client, service.base) == 0
        assert burst() == [404] * 8
        assert _limiter_failures(client, service.base) == 8
        private_redis.start()  # empty: the minute's count starts again
        assert burst() == [404] * 5 + [429] * 3
        assert _limiter_failures(client, service.base) == 8
    log = (tmp_path / "service.log").read_text()
    assert log.count("rate-limit storage unavailable") >= 1, log[-2000:]


@pytest.mark.slow
@pytest.mark.redis
def test_queue_redis_dies_then_returns(private_redis, tmp_path):
    """Stated policy: with the queue's Redis gone, job operations that need the queue are
    refused with a 503 problem and change nothing, readiness names the queue, and the
    worker waits; a task lost with Redis's memory is queued again by the sweep, and jobs
    resume when Redis is back."""
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'redact.db'}",
        "REDACT_QUEUE_URL": private_redis.url,
        "REDACT_JOB_LEASE_SECONDS": "1",
    }
    with Service(env, tmp_path) as service, httpx.Client(base_url=service.base) as client:
        _provision(env, 10)
        jobs = JobsClient(client, basic("acct0001"), queue=None)
        lost = jobs.create(transactions=["T0000", "T0001"])
        private_redis.stop()  # the task validating `lost` goes with Redis's memory

        refused = client.post(
            "/v1/redact/jobs",
            headers=jobs.headers,
            json={"objects": {"transactions": [{"id": "T0002", "product": "sms"}]}},
        )
        assert refused.status_code == 503, refused.text
        assert refused.json()["title"] == "Queue Unavailable"
        assert int(refused.headers["Retry-After"]) >= 1
        listed = client.get("/v1/redact/jobs", headers=jobs.headers).json()
        assert [job["id"] for job in listed["data"]] == [lost["id"]]
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "queue" in ready.json()["detail"]

        private_redis.start()
        time.sleep(11)  # the queued job's grace (10 leases) passes: the sweep may take it
        worker = start(env, tmp_path, "worker", "--threads", "1")
        try:
            wait_for(lambda: jobs.get(lost["id"])["status"] == "ready", interval=0.2)
            private_redis.stop()  # the worker waits for its queue...
            time.sleep(2)
            assert worker.poll() is None
            private_redis.start()  # ...and goes on when it is back
            ran = jobs.action(lost["id"], "run", expect=202)
            assert ran.json()["status"] == "redacting"
            wait_for(lambda: jobs.get(lost["id"])["status"] == "succeeded", interval=0.2)
        finally:
            stop(worker)
    _assert_redacted(env, ["T0000", "T0001"])


# ------------------------------------------------------------------ processes killed


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request, tmp_path):
    """A fresh store: an SQLite file, or a private PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'redact.db'}"
    return request.getfixturevalue("private_postgres").url


@pytest.mark.slow
def test_web_workers_killed_during_a_stream_of_redactions(store_url, tmp_path):
    """Two web workers take a stream of redactions from eight clients; each worker is
    killed with SIGKILL in turn. Every redaction answered 204 is in the store with its audit
    row, every record is whole (scrubbed with its audit, or untouched), and the stream goes
    on through the replacement workers."""
    env = {
        **(postgres_env() if not store_url.startswith("sqlite") else {}),
        "DATABASE_URL": store_url,
        "REDACT_SUBJECT_KEY": SUBJECT_KEY,
        "REDACT_QUEUE_URL": f"sqlite:///{tmp_path / 'queue.db'}",
        "REDACT_RATE_LIMIT": "100000/second",
    }
    total = 1200
    statuses: dict[str, int] = {}
    with Service(env, tmp_path, workers=2) as service:
        _provision(env, total)
        headers = basic("acct0001")
        ids = iter(f"T{i:04d}" for i in range(total))
        lock = threading.Lock()

        def client_loop():
            with httpx.Client() as client:
                while True:
                    with lock:
                        transaction_id = next(ids, None)
                    if transaction_id is None:
                        return
                    statuses[transaction_id] = _redact(
                        client, service.base, headers, transaction_id
                    )[0]

        clients = [threading.Thread(target=client_loop) for _ in range(8)]
        for thread in clients:
            thread.start()
        killed = []
        for _ in range(2):
            wait_for(lambda: len(statuses) >= 300 * (len(killed) + 1), interval=0.01)
            victim = next(pid for pid in service.worker_pids() if pid not in killed)
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)
        for thread in clients:
            thread.join(timeout=120)
        replacements = set(service.worker_pids()) - set(killed)

    codes = collections.Counter(statuses.values())
    assert len(statuses) == total and set(codes) <= {204, 0}, codes  # 0: died with a worker
    assert codes[204] >= total - 64, codes
    assert len(replacements) == 2
    _assert_redacted(env, [t for t, status in statuses.items() if status == 204])


@pytest.mark.slow
def test_service_killed_during_start_up_starts_whole_next_time(tmp_path):
    """`redact serve --demo` on a store of an earlier version (its start-up upgrades the
    schema, indexes 50,000 records' numbers in one transaction and adds the demo data) is
    killed with SIGKILL before the upgrade, then again and again inside it, a little later
    each time, until a start has finished it. After every kill the
    store is either as it was or whole; the next start completes, the demo data is there
    once, the database is intact, and redaction works."""
    path = tmp_path / "old.db"
    connection = sqlite3.connect(path)
    connection.executescript(FIRST_RELEASE)
    connection.executemany(
        "INSERT INTO \"transaction\" VALUES (?, 'acct0001', 'sms', 'outbound', "
        "'2026-01-01 00:00:00', '447700900001', ?, 'hello there', NULL, NULL)",
        [(f"T{i:05d}", f"4477009{i:05d}") for i in range(50000)],
    )
    connection.commit()
    connection.close()
    env = {"DATABASE_URL": f"sqlite:///{path}", "REDACT_SUBJECT_KEY": SUBJECT_KEY}

    def serve(log: str) -> tuple[int, subprocess.Popen]:
        """`redact serve --demo` started, its stderr in tmp_path/<log>.log."""
        port = free_port()
        return port, start(env, tmp_path, "serve", "--demo", "--port", str(port), log=log)

    def upgraded() -> bool:
        """False for the store as it was, True for a whole upgrade; fails on anything
        between."""
        with contextlib.closing(sqlite3.connect(path)) as check:
            columns = {row[1] for row in check.execute('PRAGMA table_info("transaction")')}
            if "sender_key" not in columns:
                return False
            assert check.execute(
                'SELECT count(*) FROM "transaction" WHERE'
                " recipient_key IS NULL AND redacted_at IS NULL"
            ).fetchone() == (0,)
            return True

    def wait_until_upgrading(server) -> None:
        def logged() -> bool:
            if "upgrading the store" in log_path.read_text():
                return True
            assert server.poll() is None, "the service stopped before upgrading the store"
            return False

        wait_for(logged, timeout=60, interval=0.01, what="the upgrade to begin")

    # Once before the upgrade begins, then at growing moments after it has begun.
    log_path = tmp_path / "start.log"
    _, server = serve("start")
    time.sleep(0.3)
    server.kill()
    server.wait(timeout=30)
    assert not upgraded()
    inside_upgrade = 0
    for offset in (0, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8):
        _, server = serve("start")
        wait_until_upgrading(server)
        time.sleep(offset)
        server.kill()
        server.wait(timeout=30)
        inside_upgrade += "store upgraded" not in log_path.read_text()
        if upgraded():
            break
    assert inside_upgrade >= 1

    port, server = serve("last")
    try:
        wait_until_serving(server, f"http://127.0.0.1:{port}")
        first = demo.demo_records(START)[0]
        done = httpx.post(
            f"http://127.0.0.1:{port}{URL}",
            json={"id": first["id"], "product": first["product"]},
            headers=basic(demo.API_KEY, demo.API_SECRET),
        )
    finally:
        stop(server)
    assert done.status_code == 204, done.text

    assert upgraded()
    with contextlib.closing(sqlite3.connect(path)) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        demo_rows = connection.execute(
            'SELECT count(*) FROM "transaction" WHERE api_key = ?', (demo.API_KEY,)
        ).fetchone()
        assert demo_rows == (len(demo.demo_records(START)),)
        assert connection.execute(
            "SELECT count(*) FROM account WHERE api_key = ?", (demo.API_KEY,)
        ).fetchone() == (1,)
