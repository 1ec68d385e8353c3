"""`redact serve` as users run it, in a subprocess: several workers report one sum of
metrics, and a service started before its database waits for it instead of exiting."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx

from .conftest import PASSWORD, SUBJECT_KEY, basic, record, wait_until_serving
from .services import BEARER, TOKEN, PrivatePostgres, free_port, run_cli, samples, value, wait_for


def serve(env: dict, cwd, *args: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port), *args],
        env={**os.environ, **env},
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=open(os.path.join(cwd, "serve.log"), "wb"),  # noqa: SIM115 (the process keeps it)
    )
    return process, f"http://127.0.0.1:{port}"


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(timeout=30)


def test_serve_with_two_workers_reports_one_sum(tmp_path):
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'redact.db'}",
        "REDACT_SUBJECT_KEY": SUBJECT_KEY,
        "REDACT_METRICS_TOKEN": TOKEN,
    }
    env_without_dir = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    process, base = serve({**env_without_dir, **env}, tmp_path, "--workers", "2")
    try:
        wait_until_serving(process, base)
        with httpx.Client(base_url=base) as client:
            before = samples(client.get("/metrics", headers=BEARER).text)
            for _ in range(20):
                assert client.get("/healthz").status_code == 200
        # New connections, so that both workers answer scrapes.
        scrapes = [samples(httpx.get(f"{base}/metrics", headers=BEARER).text) for _ in range(12)]
    finally:
        stop(process)
    healthz = "redact_http_requests_total"
    counts = {
        value(s, healthz, operation="/healthz", status="200")
        - value(before, healthz, operation="/healthz", status="200")
        for s in scrapes
    }
    assert counts == {20}


def test_serve_starts_before_its_database_and_serves_once_it_answers(tmp_path):
    """Under an orchestrator the database may come up after the service: it starts,
    answers /healthz, names the database on /readyz, answers 503 problems, and serves
    (creating the tables) once the database answers."""
    postgres = PrivatePostgres()  # created, not started
    env = {
        "DATABASE_URL": postgres.url,
        "REDACT_SUBJECT_KEY": SUBJECT_KEY,
        "REDACT_QUEUE_URL": f"sqlite:///{tmp_path / 'queue.db'}",
        "REDACT_MIN_AGE_SECONDS": "0",
    }
    process, base = serve(env, tmp_path)
    try:
        wait_until_serving(process, base)
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
        assert set(refused.json()) == {"type", "title", "detail", "instance"}
        assert refused.headers["Retry-After"]

        postgres.start()
        wait_for(lambda: httpx.get(f"{base}/readyz").status_code == 200, timeout=60, interval=0.5)
        run_cli(env, "accounts", "create", "--api-key", "acct0001", "--api-secret", PASSWORD)
        run_cli(env, "transactions", "load", "-", input=json.dumps(record("0A0000000123ABCD1")))
        served = httpx.post(
            f"{base}/v1/redact/transaction",
            headers=basic("acct0001"),
            json={"id": "0A0000000123ABCD1", "product": "sms"},
        )
        assert served.status_code == 204
        assert process.poll() is None
    finally:
        stop(process)
        postgres.destroy()
