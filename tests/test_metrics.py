"""GET /metrics: off without a token, bearer-protected, Prometheus text; the figures move
with what the service does; several web workers report one sum."""

from __future__ import annotations

import concurrent.futures
import datetime
import os
import pathlib
import subprocess
import sys

import httpx
import pytest

from models import database
from tests.support import (
    BEARER,
    JOBS,
    REDACT,
    ROOT,
    SUBJECT_KEY,
    TOKEN,
    Service,
    add_account,
    add_records,
    basic,
    free_port,
    record,
    redact,
    samples,
    stop,
    value,
    wait_until_serving,
)


def test_metrics_are_off_without_a_token_and_need_it(make_app, sqlite_url):
    off = make_app(sqlite_url)
    with off.test_client() as client:
        response = client.get("/metrics", headers=BEARER)
        assert response.status_code == 404 and len(response.json()["instance"]) == 32
    on = make_app(sqlite_url, metrics_token=TOKEN)
    with on.test_client() as client:
        for headers in ({}, {"Authorization": "Bearer nope"}, basic("acct0001")):
            response = client.get("/metrics", headers=headers)
            assert response.status_code == 401
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
        response = client.get("/metrics", headers=BEARER)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")


def test_the_figures_follow_what_the_service_does(make_app, sqlite_url, tmp_path):
    app = make_app(
        sqlite_url,
        metrics_token=TOKEN,
        rate_limit="2/minute",
        queue_url=f"sqlite:///{tmp_path / 'q.db'}",
    )
    with app.test_client() as client:

        def scrape():
            return samples(client.get("/metrics", headers=BEARER).text)

        headers = add_account("acct0001")
        add_records(record("M1", product="voice"))
        before = scrape()
        assert (
            client.post(
                "/v1/redact/transaction", json={"id": "M1", "product": "voice"}, headers=headers
            ).status_code
            == 204
        )
        assert (
            client.post(
                "/v1/redact/transaction",
                json={"id": "M1", "product": "voice"},
                headers=basic("acct0001", "wrong"),
            ).status_code
            == 401
        )
        assert (
            client.post(
                JOBS, json={"objects": {"subjects": ["447700900001"]}}, headers=headers
            ).status_code
            == 200
        )
        assert client.get(JOBS, headers=headers).status_code == 429  # the 3rd in a minute
        after = scrape()

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    operation = {"operation": "redact-message"}
    assert delta("redact_http_requests_total", status="204", **operation) == 1
    assert delta("redact_http_requests_total", status="401", **operation) == 1
    assert delta("redact_http_requests_total", operation="list-jobs", status="429") == 1
    assert delta("redact_http_request_duration_seconds_count", **operation) == 2
    assert delta("redact_redactions_total", product="voice") == 1
    # the redaction's batch, how long it held the write lock, the pages it wrote back
    assert delta("redact_commit_batch_size_count") >= 1
    assert delta("redact_commit_held_seconds_count") >= 1
    assert delta("redact_commit_pages_sum") > 0
    assert delta("redact_rate_limited_requests_total", api_key="acct0001") == 1
    assert delta("redact_authentication_failures_total", reason="unauthorized") == 1
    assert value(after, "redact_jobs", status="validating") == 1
    assert value(after, "redact_jobs", status="succeeded") == 0
    assert value(after, "redact_job_queue_depth") == 1
    assert value(after, "redact_job_records_redacted_total") == 0


def test_the_retention_backlog_and_records_stored_are_reported(make_app, sqlite_url, clock):
    app = make_app(sqlite_url, metrics_token=TOKEN)
    headers = add_account("acct0001")
    old = datetime.timedelta(days=40)
    with app.test_client() as client:

        def scrape():
            return samples(client.get("/metrics", headers=BEARER).text)

        records = [
            {
                k: v
                for k, v in record(f"B{n}", age=old, to=f"44770090055{n}").items()
                if k != "api_key"
            }
            for n in range(3)
        ]
        before = scrape()
        assert (
            client.post("/v1/redact/records", json={"records": records}, headers=headers).json()[
                "stored"
            ]
            == 3
        )
        client.post(
            "/v1/redact/holds",
            json={"subjects": ["447700900550"], "reason": "r"},
            headers=headers,
        )
        client.post(
            "/v1/redact/policies",
            json={"products": {"sms": {"auto_redact": "after", "after_days": 30}}},
            headers=headers,
        )
        due = scrape()
        app.services.queue.retention()
        after = scrape()
    assert (
        value(due, "redact_records_stored_total") - value(before, "redact_records_stored_total")
        == 3
    )
    assert (value(before, "redact_retention_backlog", product="sms")) == 0
    assert (value(due, "redact_retention_backlog", product="sms")) == 3
    assert (value(due, "redact_retention_held", product="sms")) == 1
    assert (value(after, "redact_retention_backlog", product="sms")) == 1
    assert (value(after, "redact_retention_held", product="sms")) == 1
    assert (value(after, "redact_retention_backlog", product="voice")) == 0
    # Past retention for 10 days (40 days old under a 30-day policy), the held one aside;
    # once the pass has run, only the held one waits, and it does not count.
    assert value(due, "redact_retention_lag_seconds", product="sms") == 10 * 86400
    assert value(after, "redact_retention_lag_seconds", product="sms") == 0
    assert ("redact_retention_lag_seconds", (("product", "voice"),)) in after


def test_the_webhook_outbox_and_unsigned_log_entries_are_reported(make_app, sqlite_url, clock):
    app = make_app(sqlite_url, metrics_token=TOKEN)
    headers = add_account("acct0001")
    add_records(record("0A0000000123ABCD1"))
    with app.test_client() as client:

        def scrape():
            return samples(client.get("/metrics", headers=BEARER).text)

        quiet = scrape()
        endpoint = {"url": "https://example.com/hooks", "events": ["hold.created"]}
        assert client.post("/v1/redact/webhooks", json=endpoint, headers=headers).is_success
        for number in ("447700900551", "447700900552"):  # one event each, not delivered
            hold = {"subjects": [number], "reason": "r"}
            assert client.post("/v1/redact/holds", json=hold, headers=headers).is_success
        redaction = {"id": "0A0000000123ABCD1", "product": "sms"}
        assert client.post(REDACT, json=redaction, headers=headers).status_code == 204
        clock.advance(minutes=10)
        waiting = scrape()
        app.services.queue.sign_tree_heads()
        signed = scrape()
    for name in ("redact_webhook_backlog", "redact_webhook_backlog_age_seconds"):
        assert (name, ()) in quiet and value(quiet, name) == 0
    assert value(quiet, "redact_tree_head_lag_seconds") == 0
    assert value(waiting, "redact_webhook_backlog") == 2
    assert value(waiting, "redact_webhook_backlog_age_seconds") == 600
    # the holds and the redaction are entries of the account's log, the first 10 minutes old
    assert value(waiting, "redact_tree_head_lag_seconds") == 600
    assert ("redact_tree_head_lag_seconds", ()) in signed
    assert value(signed, "redact_tree_head_lag_seconds") == 0


def test_a_store_that_does_not_answer_is_reported_and_the_rest_still_is(
    make_app, sqlite_url, tmp_path
):
    app = make_app(sqlite_url, metrics_token=TOKEN, queue_url=f"sqlite:///{tmp_path / 'q.db'}")
    with app.test_client() as client:
        up = samples(client.get("/metrics", headers=BEARER).text)
        database.close()
        database.obj.close_all()
        (tmp_path / "redact.db").write_bytes(b"not a database" * 100)
        response = client.get("/metrics", headers=BEARER)
    assert response.status_code == 200
    down = samples(response.text)
    assert ("redact_store_up", ()) in up and value(up, "redact_store_up") == 1
    assert ("redact_store_up", ()) in down and value(down, "redact_store_up") == 0
    assert not any(name == "redact_jobs" for name, _ in down)  # not read: not reported
    assert value(down, "redact_job_queue_depth") == 0 and ("redact_job_queue_depth", ()) in down
    # the process's own figures: the scrape before this one
    scrapes = {"operation": "/metrics", "status": "200"}
    assert value(down, "redact_http_requests_total", **scrapes) == (
        value(up, "redact_http_requests_total", **scrapes) + 1
    )


def healthz_counts(base: str) -> set[float]:
    """200 health checks from 8 threads, then 8 scrapes; the /healthz count each scrape
    reported."""
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda _: httpx.get(f"{base}/healthz").status_code, range(200)))
    assert codes.count(200) == 200
    scrapes = [samples(httpx.get(f"{base}/metrics", headers=BEARER).text) for _ in range(8)]
    return {
        value(s, "redact_http_requests_total", operation="/healthz", status="200") for s in scrapes
    }


@pytest.mark.slow
def test_several_web_workers_report_one_sum(tmp_path):
    metrics_dir = tmp_path / "metrics"
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'redact.db'}",
        "REDACT_SUBJECT_KEY": SUBJECT_KEY,
        "REDACT_METRICS_TOKEN": TOKEN,
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    with Service(env, tmp_path, workers=2) as service:
        counts = healthz_counts(service.base)
    workers = {path.name for path in pathlib.Path(metrics_dir).glob("counter_*.db")}
    assert len(workers) >= 2, f"one worker served everything: {workers}"
    assert counts == {200 + 1}  # and the readiness poll that saw the server up


@pytest.mark.slow
def test_the_procfile_web_command_sums_its_workers(tmp_path):
    """The Procfile's `web:` line, run as written (2 workers, no metrics directory set):
    every scrape, whichever worker answers it, counts every worker's requests."""
    web = next(
        line.split(":", 1)[1].strip()
        for line in (ROOT / "Procfile").read_text().splitlines()
        if line.startswith("web:")
    )
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'redact.db'}",
            "PORT": str(port),
            "WEB_CONCURRENCY": "2",
            "REDACT_SUBJECT_KEY": SUBJECT_KEY,
            "REDACT_METRICS_TOKEN": TOKEN,
            "PATH": f"{os.path.dirname(sys.executable)}:{env.get('PATH', '')}",
        }
    )
    redact(env, "migrate", check=True)  # the Procfile's release step
    server = subprocess.Popen(
        ["bash", "-c", f"exec {web}"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_serving(server, f"http://127.0.0.1:{port}")
        counts = healthz_counts(f"http://127.0.0.1:{port}")
    finally:
        stop(server)
    assert counts == {200 + 1}  # with per-process counts, each worker would show its own
