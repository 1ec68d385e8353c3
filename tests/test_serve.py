"""`redact serve` as users run it, in a subprocess: several workers report one sum of
metrics, and a service started before its database waits for it instead of exiting."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support import (
    BEARER,
    PASSWORD,
    PROBLEM_FIELDS,
    SUBJECT_KEY,
    TOKEN,
    PrivatePostgres,
    basic,
    cli,
    postgres_env,
    record,
    samples,
    served,
    value,
    wait_for,
)

pytestmark = pytest.mark.slow


def test_serve_with_two_workers_reports_one_sum(tmp_path, monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)  # serve makes its own
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'redact.db'}",
        "REDACT_SUBJECT_KEY": SUBJECT_KEY,
        "REDACT_METRICS_TOKEN": TOKEN,
    }
    with served(env, tmp_path, "--workers", "2") as (_, base):
        with httpx.Client(base_url=base) as client:
            before = samples(client.get("/metrics", headers=BEARER).text)
            for _ in range(20):
                assert client.get("/healthz").status_code == 200
        # New connections, so that both workers answer scrapes.
        scrapes = [samples(httpx.get(f"{base}/metrics", headers=BEARER).text) for _ in range(12)]
    healthz = "redact_http_requests_total"
    counts = {
        value(s, healthz, operation="/healthz", status="200")
        - value(before, healthz, operation="/healthz", status="200")
        for s in scrapes
    }
    assert counts == {20}


@pytest.mark.postgres
def test_serve_starts_before_its_database_and_serves_once_it_answers(tmp_path):
    """Under an orchestrator the database may come up after the service: it starts,
    answers /healthz, names the database on /readyz, answers 503 problems, and serves
    (creating the tables) once the database answers."""
    postgres = PrivatePostgres()  # created, not started
    env = {
        **postgres_env(),
        "DATABASE_URL": postgres.url,
        "REDACT_QUEUE_URL": f"sqlite:///{tmp_path / 'queue.db'}",
        "REDACT_MIN_AGE_SECONDS": "0",
    }
    try:
        with served(env, tmp_path) as (process, base):
            ready = httpx.get(f"{base}/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"]["database"] == "down"
            assert "database" in ready.json()["detail"]
            refused = httpx.post(
                f"{base}/v1/redact/transaction",
                headers=basic("acct0001"),
                json={"id": "0A0000000123ABCD1", "product": "sms"},
            )
            assert refused.status_code == 503
            assert set(refused.json()) == PROBLEM_FIELDS
            assert int(refused.headers["Retry-After"]) >= 1

            postgres.start()
            wait_for(
                lambda: httpx.get(f"{base}/readyz").status_code == 200,
                timeout=60,
                interval=0.5,
                what="/readyz to answer 200",
            )
            account = ("--api-key", "acct0001", "--api-secret", PASSWORD)
            cli(env, "accounts", "create", *account, check=True)
            loaded = json.dumps(record("0A0000000123ABCD1"))
            cli(env, "transactions", "load", "-", stdin=loaded, check=True)
            answered = httpx.post(
                f"{base}/v1/redact/transaction",
                headers=basic("acct0001"),
                json={"id": "0A0000000123ABCD1", "product": "sms"},
            )
            assert answered.status_code == 204
            assert process.poll() is None
    finally:
        postgres.destroy()
