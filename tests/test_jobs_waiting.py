"""A job whose records are partly premature, through the jobs API and the app's real
queue, with the app's clock moved: the run redacts the rest at once and says what waits
and until when, goes on by itself then, and can be cancelled while it waits (what it
redacted stays redacted; its result and receipt say what it left)."""

from __future__ import annotations

import datetime
import json
import pathlib
import re

from app.demo import API_KEY, API_SECRET, seed_demo
from models import database
from models.webhooks.rows import WebhookEvent
from tests.docs_support import differences, loose_json
from tests.support import (
    JOBS,
    START,
    SUBJECT_KEY,
    JobsClient,
    add_account,
    add_records,
    assert_job_contract,
    audit_for,
    basic,
    cli,
    record,
    row,
)

SUBJECT = "447700900123"
MINUTES = datetime.timedelta(minutes=1)


def shown(jobs: JobsClient, job_id: str) -> dict:
    return assert_job_contract(
        jobs.client.get(f"{JOBS}/{job_id}", headers=jobs.headers), "/jobs/{job}", "get"
    )


def redacted(*ids: str) -> list[bool]:
    return [row(i).redacted_at is not None for i in ids]


def waiting_job(jobs: JobsClient) -> str:
    """A running job of two old records and two premature ones (one named, 10 minutes
    old; one about its subject, 5 minutes old), drained once."""
    add_records(
        record("T1"),
        record("P1", age=10 * MINUTES),
        record("S1", to=SUBJECT),
        record("S2", age=5 * MINUTES, **{"from": SUBJECT}),
    )
    job = jobs.ready(["T1", "P1"], [SUBJECT], validation_behavior="fix")
    started = jobs.action(job["id"], "run", expect=202)
    assert assert_job_contract(started, "/jobs/{job}/run", "post")["waiting"] is None
    jobs.drain()
    return job["id"]


def test_a_run_redacts_what_it_can_at_once_and_says_what_waits_until_when(jobs, clock):
    job_id = waiting_job(jobs)
    job = shown(jobs, job_id)
    assert job["status"] == "redacting"
    assert job["counts"]["redacted"] == 2
    # S2, the younger, comes of age 55 minutes after START
    until = int((START + 55 * MINUTES).timestamp())
    assert job["waiting"] == {"records": 2, "until": until}
    assert redacted("T1", "S1", "P1", "S2") == [True, True, False, False]
    assert audit_for(job_id) == ["S1", "T1"]

    clock.advance(minutes=54)
    jobs.drain()
    assert shown(jobs, job_id)["waiting"] == {"records": 2, "until": until}

    clock.advance(minutes=1)
    jobs.drain()  # the task the run scheduled for `until`
    done = shown(jobs, job_id)
    assert (done["status"], done["waiting"]) == ("succeeded", None)
    assert (done["counts"]["redacted"], done["counts"]["already_redacted"]) == (4, 0)
    assert redacted("T1", "S1", "P1", "S2") == [True, True, True, True]
    assert audit_for(job_id) == ["P1", "S1", "S2", "T1"]  # each once


def test_jobs_show_prints_what_waits(make_app, sqlite_url, tmp_path):
    app = make_app(sqlite_url, queue_url=f"sqlite:///{tmp_path / 'queue.db'}")
    headers = add_account("acct0001")
    with app.test_client() as client:
        jobs = JobsClient(client, headers, app.services.queue)
        job_id = waiting_job(jobs)
        api = shown(jobs, job_id)
    env = {"DATABASE_URL": sqlite_url, "REDACT_SUBJECT_KEY": SUBJECT_KEY}
    printed = json.loads(cli(env, "jobs", "show", job_id, check=True).stdout)
    assert (
        printed["waiting"]
        == api["waiting"]
        == {
            "records": 2,
            "until": int((START + 55 * MINUTES).timestamp()),
        }
    )
    assert printed == api


def test_a_job_with_nothing_premature_never_waits(jobs):
    add_records(record("T1"), record("T2"))
    job = jobs.ready(["T1", "T2"])
    jobs.action(job["id"], "run", expect=202)
    jobs.drain()
    assert (shown(jobs, job["id"])["status"], shown(jobs, job["id"])["waiting"]) == (
        "succeeded",
        None,
    )


def test_cancel_while_waiting_keeps_what_was_redacted_and_says_what_was_not(jobs, clock):
    hook = {"url": "https://example.com/hooks", "events": ["job.canceled"]}
    registered = jobs.client.post("/v1/redact/webhooks", json=hook, headers=jobs.headers)
    assert registered.status_code == 201, registered.text
    job_id = waiting_job(jobs)
    response = jobs.action(job_id, "cancel", expect=200)
    assert assert_job_contract(response, "/jobs/{job}/cancel", "post")["status"] == "canceling"
    jobs.drain()
    canceled = shown(jobs, job_id)
    assert canceled["status"] == "canceled"
    assert canceled["counts"]["redacted"] == 2
    assert canceled["waiting"] == {"records": 2, "until": int((START + 55 * MINUTES).timestamp())}
    with database.connection_context():
        (event,) = [json.loads(e.payload) for e in WebhookEvent.select()]
    assert event["type"] == "job.canceled"
    assert event["data"]["job"] == {k: canceled[k] for k in ("id", "status", "counts", "waiting")}

    clock.advance(hours=2)  # the task scheduled for `until` finds the job canceled
    jobs.drain()
    assert shown(jobs, job_id)["status"] == "canceled"
    assert redacted("T1", "S1", "P1", "S2") == [True, True, False, False]
    assert audit_for(job_id) == ["S1", "T1"]

    receipt = jobs.client.get(f"{JOBS}/{job_id}/receipt", headers=jobs.headers)
    assert receipt.status_code == 200, receipt.text
    document = receipt.json()["document"]
    assert document["job"]["status"] == "canceled"
    assert (document["job"]["redacted"], document["job"]["not_redacted"]) == (2, 2)
    assert document["records"]["count"] == 2


def test_a_running_job_that_does_not_wait_cannot_be_cancelled(jobs):
    add_records(record("T1"))
    job = jobs.ready(["T1"])
    jobs.action(job["id"], "run", expect=202)
    refused = jobs.action(job["id"], "cancel", expect=409)
    assert "while it waits for premature records" in refused.json()["detail"]
    jobs.drain()
    assert shown(jobs, job["id"])["status"] == "succeeded"


def test_a_job_cancelled_before_it_runs_left_every_record(jobs):
    add_records(record("T1"), record("T2"))
    job = jobs.ready(["T1", "T2"])
    jobs.action(job["id"], "cancel", expect=200)
    jobs.drain()
    assert shown(jobs, job["id"])["waiting"] is None
    receipt = jobs.client.get(f"{JOBS}/{job['id']}/receipt", headers=jobs.headers).json()
    assert (receipt["document"]["job"]["redacted"], receipt["document"]["job"]["not_redacted"]) == (
        0,
        2,
    )


DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs" / "jobs.md"


def docs_examples() -> list:
    """The JSON examples of docs/jobs.md, in order, as tests/docs_support.py reads them
    (`...` for what varies)."""
    return [
        loose_json(block) for block in re.findall(r"```json\n(.*?)\n```", DOCS.read_text(), re.S)
    ]


def test_the_dsar_example_of_the_docs_prints_what_the_service_prints(jobs, clock):
    """docs/jobs.md's DSAR job (tests/test_docs_examples.py runs it against the demo),
    here with the clock injected: what waits comes of age 55 minutes on."""
    with database.connection_context():
        seed_demo(clock())
    demo = basic(API_KEY, API_SECRET)
    demo_jobs = JobsClient(jobs.client, demo, jobs.queue)
    created = demo_jobs.create(
        [{"id": "0A0000000DEMO0001", "product": "sms"}],
        ["+44 7700 900001"],
        validation_behavior="fix",
        description="DSAR 42 (Smith)",
        headers={"Idempotency-Key": "dsar-2026-0042"},
    )
    demo_jobs.drain()
    demo_jobs.action(created["id"], "run", expect=202)
    demo_jobs.drain()
    waiting, printed, receipt = docs_examples()
    job = shown(demo_jobs, created["id"])
    assert differences(waiting, job) == []
    assert differences(printed, job) == []  # `redact jobs show` prints the API's object
    # The demo's young record is 5 minutes old: it comes of age 55 minutes from now.
    assert job["waiting"]["until"] == int((START + 55 * MINUTES).timestamp())

    demo_jobs.action(created["id"], "cancel", expect=200)
    demo_jobs.drain()
    answer = demo_jobs.client.get(f"{JOBS}/{created['id']}/receipt", headers=demo)
    assert differences(receipt, answer.json()) == []
    assert answer.json()["document"]["job"]["id"] == created["id"]
