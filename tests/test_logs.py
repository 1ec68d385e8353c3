"""Logs: one JSON line per request and per job transition, and never personal data, at
any level, errors included. Records carry marker values; every line is searched."""

from __future__ import annotations

import io
import json
import logging

import pytest

from app.logs import JsonFormatter, quiet_libraries
from tests.support import JOBS, JobsClient, add_account, add_records, record

NUMBER = "447700955501"
TEXT = "LOG-MARKER-93c1"
MARKERS = (NUMBER, "7700 955501", "7700955501", TEXT)


@pytest.fixture
def log_lines():
    """Every record of the service's loggers, at every level, as the service writes it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    loggers = [logging.getLogger(name) for name in ("redact", "huey", "peewee")]
    saved = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    quiet_libraries()  # the service's policy: what it caps stays capped
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    for logger, level in zip(loggers, saved, strict=True):
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_requests_and_job_transitions_are_logged_without_personal_data(
    make_app, database_url, tmp_path, log_lines
):
    app = make_app(database_url, queue_url=f"sqlite:///{tmp_path / 'q.db'}")
    with app.test_client() as client:
        jobs = JobsClient(client, add_account("acct0001"), app.services.queue)
        add_records(
            record("L1", to=NUMBER, text=TEXT),
            record("L2", product="voice", **{"from": "+44 7700 955501"}),
            record("L3", to=NUMBER, text=TEXT),
        )
        assert (
            client.post(
                "/v1/redact/transaction", json={"id": "L1", "product": "sms"}, headers=jobs.headers
            ).status_code
            == 204
        )
        # errors whose requests carry the markers: in the body, the path and the query
        missing = client.post(
            "/v1/redact/transaction",
            json={"id": NUMBER, "product": "sms", "x": TEXT},
            headers=jobs.headers,
        )
        assert missing.status_code in (404, 422)
        assert client.get(
            f"/v1/redact/jobs/{NUMBER}?q={TEXT}", headers=jobs.headers
        ).status_code in (400, 404)
        assert client.get(f"/v1/redact/{NUMBER}", headers=jobs.headers).status_code == 404
        bad_subject = client.post(
            JOBS, json={"objects": {"subjects": [TEXT]}}, headers=jobs.headers
        )
        assert bad_subject.status_code == 422
        job = jobs.ready(["L3"], ["+44 7700 955501"])
        jobs.action(job["id"], "run", expect=202)
        jobs.drain()
        assert jobs.get(job["id"])["status"] == "succeeded"

    lines = log_lines()
    text = json.dumps(lines)
    for marker in MARKERS:
        assert marker not in text, marker

    requests = [line for line in lines if line.get("event") == "request"]
    assert {"time", "method", "route", "status", "duration_ms", "api_key", "trace_id"} <= set(
        requests[0]
    )
    by_trace = {line["trace_id"]: line for line in requests}
    assert by_trace[missing.json()["instance"]]["route"] == "POST /v1/redact/transaction"
    assert by_trace[missing.json()["instance"]]["api_key"] == "acct0001"
    transitions = [
        (line["from"], line["to"])
        for line in lines
        if line.get("event") == "job_transition" and line["job"] == job["id"]
    ]
    assert transitions == [
        (None, "created"),
        ("created", "validating"),
        ("validating", "ready"),
        ("ready", "redacting"),
        ("redacting", "succeeded"),
    ]


def test_an_exception_is_logged_as_its_type_and_stack_never_its_message(log_lines):
    try:
        raise ValueError(f"duplicate key value (recipient)=({NUMBER})")
    except ValueError:
        logging.getLogger("redact.errors").exception("unhandled error")
    [line] = log_lines()
    assert line["exception"]["type"] == "builtins.ValueError"
    assert any("test_logs.py" in frame for frame in line["exception"]["stack"])
    assert NUMBER not in json.dumps(line)
