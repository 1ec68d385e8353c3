"""The jobs API (openapi/jobs.yml) through Connexion's test client, on SQLite and
PostgreSQL, with the app's real queue: every move of the state machine, every validation
code under both behaviours, pagination, idempotency, scheduling, admission control and
subject erasure."""

from __future__ import annotations

import datetime

import pytest

from models import Transaction, current_store, database
from models.jobs.job import JobObject, RedactionJob, TransactionRef
from models.jobs.lifecycle import create_job
from tests.support import (
    JOBS,
    START,
    JobsClient,
    add_account,
    add_records,
    assert_job_contract,
    audit_for,
    record,
    row,
)

# ------------------------------------------------------------------------ the resource


def test_create_answers_the_job_validating_and_validation_makes_it_ready(jobs):
    add_records(record("T1"), record("T2", product="voice"))
    response = jobs.client.post(
        JOBS,
        json={
            "objects": {
                "transactions": [{"id": "T1", "product": "sms"}, {"id": "T2", "product": "voice"}]
            },
            "description": "retention clean-up",
        },
        headers=jobs.headers,
    )
    job = assert_job_contract(response, "/jobs", "post")
    assert response.status_code == 200
    assert job["id"].startswith("rj_") and job["object"] == "redaction_job"
    assert (job["status"], job["validation_behavior"], job["livemode"]) == (
        "validating",
        "error",
        True,
    )
    assert job["created"] == int(START.timestamp())
    assert job["objects"] is None  # omitted unless expanded
    assert job["counts"]["transactions"] == 2
    jobs.drain()
    ready = assert_job_contract(
        jobs.client.get(f"{JOBS}/{job['id']}", headers=jobs.headers), "/jobs/{job}", "get"
    )
    assert ready["status"] == "ready"
    assert ready["counts"]["records"] == 2


def test_expand_objects_shows_them_in_the_order_given(jobs):
    add_records(record("T1"), record("T2", type="inbound"))
    job = jobs.create(
        [{"id": "T2", "product": "sms", "type": "inbound"}, "T1"], ["+44 7700 900123"]
    )
    expanded = jobs.get(job["id"], **{"expand[]": "objects"})
    assert expanded["objects"] == {
        "transactions": [
            {"id": "T2", "product": "sms", "type": "inbound"},
            {"id": "T1", "product": "sms", "type": "outbound"},
        ],
        "subjects": ["+44 7700 900123"],
    }
    listed = jobs.client.get(JOBS, params={"expand[]": "objects"}, headers=jobs.headers)
    assert listed.json()["data"][0]["objects"] == expanded["objects"]


def test_run_redacts_every_record_once_with_exact_counts_and_audit(jobs):
    add_records(*(record(f"T{n}") for n in range(5)))
    job = jobs.ready([f"T{n}" for n in range(5)])
    response = jobs.action(job["id"], "run", expect=202)
    assert assert_job_contract(response, "/jobs/{job}/run", "post")["status"] == "redacting"
    jobs.drain()
    done = jobs.get(job["id"])
    assert done["status"] == "succeeded"
    assert done["counts"] | {} == {
        "transactions": 5,
        "subjects": 0,
        "records": 5,
        "redacted": 5,
        "already_redacted": 0,
        "skipped": 0,
        "validation_errors": 0,
    }
    assert all(row(f"T{n}").body == "REDACTED" for n in range(5))
    assert audit_for(job["id"]) == [f"T{n}" for n in range(5)]


def test_another_accounts_job_does_not_exist_for_you(jobs):
    add_records(record("T1"))
    job = jobs.create(["T1"])
    stranger = add_account("acct0002")
    for method, path in [
        ("get", f"{JOBS}/{job['id']}"),
        ("post", f"{JOBS}/{job['id']}/run"),
        ("post", f"{JOBS}/{job['id']}/cancel"),
        ("get", f"{JOBS}/{job['id']}/validation_errors"),
    ]:
        response = getattr(jobs.client, method)(path, headers=stranger)
        assert response.status_code == 404
        assert response.json()["type"] == "urn:redact:problem:job-not-found"
    assert jobs.client.get(JOBS, headers=stranger).json()["data"] == []


def test_a_job_of_another_accounts_records_fails_validation(jobs):
    add_account("acct0002")
    add_records(record("T9", api_key="acct0002"))
    job = jobs.create(["T9"])
    jobs.drain()
    assert jobs.get(job["id"])["status"] == "failed"
    [error] = jobs.errors(job["id"])["data"]
    assert error["code"] == "unknown_transaction"


# ------------------------------------------------------------------- the state machine


def _job_in(jobs: JobsClient, status: str) -> str:
    """A job of the account in `status`, reached through the API where it can be."""
    add_records(record("R1"), record("R2", age=datetime.timedelta(minutes=5)))
    if status == "created":
        with database.connection_context():
            job, _ = create_job(
                api_key="acct0001",
                transactions=[TransactionRef("R1", "sms")],
                subjects=[],
                now=START,
                max_unfinished=10,
            )
        return job.id
    if status == "validating":
        return jobs.create(["R1"])["id"]
    if status == "failed":
        job = jobs.create(["R2"])  # premature
        jobs.drain()
        return job["id"]
    job = jobs.ready(["R1"])["id"]
    if status == "ready":
        return job
    if status in ("redacting", "succeeded"):
        jobs.action(job, "run", expect=202)
    if status in ("canceling", "canceled"):
        jobs.action(job, "cancel", expect=200)
    if status in ("succeeded", "canceled"):
        jobs.drain()
    return job


ALLOWED = {
    ("validate", "failed"): "validating",
    ("run", "ready"): "redacting",
    ("cancel", "ready"): "canceling",
    ("cancel", "failed"): "canceling",
}
STATUSES = (
    "created",
    "validating",
    "ready",
    "failed",
    "redacting",
    "succeeded",
    "canceling",
    "canceled",
)


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("action", ["validate", "run", "cancel"])
def test_every_move_from_every_status(jobs, action, status):
    job_id = _job_in(jobs, status)
    assert jobs.get(job_id)["status"] == status
    response = jobs.action(job_id, action)
    body = assert_job_contract(response, f"/jobs/{{job}}/{action}", "post")
    target = ALLOWED.get((action, status))
    if target is None:
        assert response.status_code == 409
        assert body["type"] == "urn:redact:problem:invalid-job-status"
        assert f"in status '{status}'" in body["detail"]
        assert jobs.get(job_id)["status"] == status  # nothing moved
    else:
        assert response.status_code == (202 if action == "run" else 200)
        assert body["status"] == target


def test_cancel_finishes_as_canceled_and_redacts_nothing(jobs):
    add_records(record("T1"))
    job = jobs.ready(["T1"], ["447700900001"])
    assert jobs.action(job["id"], "cancel", expect=200).json()["status"] == "canceling"
    jobs.drain()
    canceled = jobs.get(job["id"], **{"expand[]": "objects"})
    assert canceled["status"] == "canceled"
    assert canceled["objects"]["subjects"] == ["REDACTED"]  # the number is forgotten
    assert row("T1").redacted_at is None


def test_validate_again_after_fixing_a_failed_job(jobs):
    add_records(record("T1"))
    job = jobs.create(["T1", "NOPE"])
    jobs.drain()
    assert jobs.get(job["id"])["status"] == "failed"
    add_records(record("NOPE"))
    assert jobs.action(job["id"], "validate", expect=200).json()["status"] == "validating"
    jobs.drain()
    again = jobs.get(job["id"])
    assert again["status"] == "ready"
    assert again["counts"]["validation_errors"] == 0
    assert jobs.errors(job["id"])["data"] == []


# ---------------------------------------------------------------------- validation codes


def _premature():
    add_records(record("P1", age=datetime.timedelta(minutes=10)))
    return {"transactions": ["P1"]}


def _redacted(jobs):
    add_records(record("A1"))
    assert (
        jobs.client.post(
            "/v1/redact/transaction", json={"id": "A1", "product": "sms"}, headers=jobs.headers
        ).status_code
        == 204
    )
    return {"transactions": ["A1"]}


def _held(jobs):
    add_records(record("H1"))
    jobs.ready(["H1"])
    return {"transactions": ["H1"]}


def _unprovisioned(jobs):
    add_records(record("V1", product="voice"))
    with database.connection_context():
        from models import Account

        Account.update(products="sms").where(Account.api_key == "acct0001").execute()
    return {"transactions": [{"id": "V1", "product": "voice"}]}


CASES = {
    "unknown_transaction": lambda jobs: {"transactions": ["NOT-THERE"]},
    "unprovisioned": _unprovisioned,
    "premature": lambda jobs: _premature(),
    "already_redacted": _redacted,
    "held_by_other_job": _held,
    "subject_has_no_records": lambda jobs: {"subjects": ["447700999999"]},
}
FIXED = {"premature", "already_redacted"}


@pytest.mark.parametrize("behavior", ["error", "fix"])
@pytest.mark.parametrize("code", list(CASES))
def test_each_validation_code_under_each_behavior(jobs, code, behavior):
    objects = CASES[code](jobs)
    job = jobs.create(
        objects.get("transactions", ()), objects.get("subjects", ()), validation_behavior=behavior
    )
    jobs.drain()
    validated = jobs.get(job["id"])
    errors = jobs.errors(job["id"])
    if behavior == "fix" and code in FIXED:
        assert validated["status"] == "ready"
        assert errors["data"] == []
        return
    assert validated["status"] == "failed"
    assert validated["counts"]["validation_errors"] == 1
    [error] = errors["data"]
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"].strip()
    expected = (
        {"subject": objects["subjects"][0]}
        if "subjects" in objects
        else {
            "transaction": {
                "id": objects["transactions"][0]["id"]
                if isinstance(objects["transactions"][0], dict)
                else objects["transactions"][0],
                "product": "voice" if code == "unprovisioned" else "sms",
                "type": None if code == "unprovisioned" else "outbound",
            }
        }
    )
    assert error["object"] == expected


def test_fix_drops_already_redacted_records(jobs):
    _redacted(jobs)
    add_records(record("T2"))
    job = jobs.ready(["A1", "T2"], validation_behavior="fix")
    assert (job["counts"]["records"], job["counts"]["already_redacted"]) == (1, 1)
    jobs.action(job["id"], "run", expect=202)
    jobs.drain()
    done = jobs.get(job["id"])
    assert done["status"] == "succeeded"
    assert done["counts"]["redacted"] == 1
    assert audit_for(job["id"]) == ["T2"]


def test_fix_makes_the_run_wait_for_premature_records(jobs, clock):
    _premature()  # 10 minutes old: eligible in 50
    job = jobs.ready(["P1"], validation_behavior="fix")
    jobs.action(job["id"], "run", expect=202)
    jobs.drain()
    assert jobs.get(job["id"])["status"] == "redacting"
    assert row("P1").redacted_at is None
    clock.advance(minutes=49)
    jobs.drain()
    assert row("P1").redacted_at is None
    clock.advance(minutes=1)
    jobs.drain()  # the task the run scheduled for that moment
    assert jobs.get(job["id"])["status"] == "succeeded"
    assert row("P1").body == "REDACTED"


def test_an_object_named_twice_counts_once(jobs):
    add_records(record("T1"), record("S1", to="447700900321"))
    job = jobs.create(
        [{"id": "T1", "product": "sms"}, {"id": "T1", "product": "sms", "type": "outbound"}],
        ["447700900321", "+44 7700 900321"],
    )
    assert (job["counts"]["transactions"], job["counts"]["subjects"]) == (1, 1)
    jobs.drain()
    assert jobs.get(job["id"])["counts"]["records"] == 2


def test_one_id_named_as_two_products_fails_as_an_unknown_transaction(jobs):
    add_records(record("T1"))
    job = jobs.create(
        [{"id": "T1", "product": "sms"}, {"id": "T1", "product": "voice"}],
        validation_behavior="fix",
    )
    jobs.drain()
    assert jobs.get(job["id"])["status"] == "failed"
    [error] = jobs.errors(job["id"])["data"]
    assert (error["code"], error["object"]["transaction"]["product"]) == (
        "unknown_transaction",
        "voice",
    )


@pytest.mark.parametrize(
    "objects",
    [
        {},
        {"transactions": []},
        {"subjects": ["not a number"]},
        {"transactions": [{"id": "T1", "product": "fax"}]},
    ],
)
def test_malformed_objects_are_422_and_create_nothing(jobs, objects):
    response = jobs.client.post(JOBS, json={"objects": objects}, headers=jobs.headers)
    assert_job_contract(response, "/jobs", "post")
    assert response.status_code == 422
    with database.connection_context():
        assert RedactionJob.select().count() == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            {"objects": {"transactions": [{"id": "T\u0000", "product": "sms"}]}},
            "objects.transactions[0].id",
        ),
        ({"objects": {"subjects": ["447700900001"]}, "description": "DSAR\u000042"}, "description"),
        ({"objects": {"subjects": ["447700900001"]}, "note\u0000": "x"}, "note\u0000"),
    ],
)
def test_a_nul_character_in_a_body_is_a_422_and_stores_nothing(jobs, body, field):
    """PostgreSQL's text cannot hold NUL: refused before anything is stored, on SQLite too."""
    add_records(record("T1"))
    response = jobs.client.post(JOBS, json=body, headers=jobs.headers)
    problem = assert_job_contract(response, "/jobs", "post")
    assert response.status_code == 422
    assert problem["type"] == "urn:redact:problem:invalid-request"
    assert problem["errors"] == [{"field": field, "reason": "must not contain a NUL character"}]
    job = jobs.ready(["T1"], description="kept")
    for update in ({"description": "a\u0000b"}, {"description": "ok", "x": ["\u0000"]}):
        response = jobs.client.post(f"{JOBS}/{job['id']}", json=update, headers=jobs.headers)
        assert_job_contract(response, "/jobs/{job}", "post")
        assert response.status_code == 422, response.text
    assert jobs.get(job["id"])["description"] == "kept"
    with database.connection_context():
        assert RedactionJob.select().count() == 1


# ------------------------------------------------------------------------------ update


def test_update_description_and_run_at(jobs):
    add_records(record("T1"))
    job = jobs.ready(["T1"])
    later = int(START.timestamp()) + 3600
    updated = jobs.update(job["id"], description="DSAR 42", run_at=later)
    assert (updated["description"], updated["run_at"], updated["status"]) == (
        "DSAR 42",
        later,
        "ready",
    )


def test_behavior_changes_only_while_failed_and_a_failed_job_stays_failed(jobs):
    add_records(record("P1", age=datetime.timedelta(minutes=10)))
    failed = jobs.create(["P1"])
    jobs.drain()
    updated = jobs.update(failed["id"], validation_behavior="fix")
    assert (updated["status"], updated["validation_behavior"]) == ("failed", "fix")
    jobs.drain()
    assert jobs.get(failed["id"])["status"] == "failed"  # no validation by itself
    jobs.action(failed["id"], "validate", expect=200)
    jobs.drain()
    ready = jobs.get(failed["id"])
    assert ready["status"] == "ready"
    response = jobs.client.post(
        f"{JOBS}/{failed['id']}", json={"validation_behavior": "error"}, headers=jobs.headers
    )
    body = assert_job_contract(response, "/jobs/{job}", "post")
    assert response.status_code == 409 and "status 'ready'" in body["detail"]


def test_run_at_cannot_change_once_the_job_runs(jobs):
    add_records(record("T1"))
    job = jobs.ready(["T1"])
    jobs.action(job["id"], "run", expect=202)
    response = jobs.client.post(
        f"{JOBS}/{job['id']}", json={"run_at": 2000000000}, headers=jobs.headers
    )
    assert response.status_code == 409
    assert jobs.update(job["id"], description="still fine")["description"] == "still fine"


# -------------------------------------------------------------------------- scheduling


def test_a_ready_job_with_run_at_runs_by_itself_then(jobs, clock):
    add_records(record("T1"))
    run_at = START + datetime.timedelta(hours=3)
    job = jobs.ready(["T1"], run_at=int(run_at.timestamp()))
    clock.advance(hours=2, minutes=59)
    jobs.drain()
    assert jobs.get(job["id"])["status"] == "ready"
    clock.advance(minutes=1)
    jobs.drain()  # the task scheduled for run_at
    assert jobs.get(job["id"])["status"] == "succeeded"
    assert row("T1").body == "REDACTED"


def test_the_sweep_runs_due_jobs_and_takes_over_from_a_dead_worker(jobs, clock):
    add_records(record("T1"), record("T2"))
    scheduled = jobs.ready(["T1"])
    jobs.update(scheduled["id"], run_at=int((START + datetime.timedelta(minutes=5)).timestamp()))
    orphan = jobs.ready(["T2"])
    jobs.action(orphan["id"], "run", expect=202)
    jobs.queue.huey.flush()  # the queued task is lost, as if its worker had died
    with database.connection_context():  # ... holding the job
        (
            RedactionJob.update(
                lease_owner="dead-host:1:1", lease_until=START + datetime.timedelta(seconds=60)
            )
            .where(RedactionJob.id == orphan["id"])
            .execute()
        )
    clock.advance(minutes=5)
    assert sorted(jobs.queue.sweep()) == sorted([scheduled["id"], orphan["id"]])
    jobs.drain()
    assert jobs.get(scheduled["id"])["status"] == "succeeded"
    assert jobs.get(orphan["id"])["status"] == "succeeded"


# ---------------------------------------------------------------------- sync and async


def test_sync_run_answers_200_with_the_finished_job(jobs):
    add_records(record("T1"), record("T2"))
    job = jobs.ready(["T1", "T2"])
    response = jobs.action(job["id"], "run", processing_mode="sync")
    body = assert_job_contract(response, "/jobs/{job}/run", "post")
    assert response.status_code == 200
    assert body["status"] == "succeeded" and body["counts"]["redacted"] == 2
    assert jobs.queue.huey.pending_count() == 0


def test_sync_run_of_a_job_too_large_is_422_and_leaves_it_ready(make_app, database_url, tmp_path):
    app = make_app(database_url, queue_url=f"sqlite:///{tmp_path / 'q.db'}", sync_max_records=1)
    with app.test_client() as client:
        jobs = JobsClient(client, add_account("acct0001"), app.services.queue)
        add_records(record("T1"), record("T2"))
        job = jobs.ready(["T1", "T2"])
        response = jobs.action(job["id"], "run", processing_mode="sync")
        body = assert_job_contract(response, "/jobs/{job}/run", "post")
        assert response.status_code == 422
        assert body["type"] == "urn:redact:problem:too-large-for-sync"
        assert jobs.get(job["id"])["status"] == "ready"


# ------------------------------------------------------------------- admission control


def test_too_many_unfinished_jobs_is_429_and_creates_nothing(make_app, database_url, tmp_path):
    app = make_app(database_url, queue_url=f"sqlite:///{tmp_path / 'q.db'}", max_active_jobs=2)
    with app.test_client() as client:
        jobs = JobsClient(client, add_account("acct0001"), app.services.queue)
        add_records(record("T1"), record("T2"), record("T3"))
        jobs.create(["T1"])
        jobs.create(["T2"])
        response = client.post(
            JOBS,
            json={"objects": {"transactions": [{"id": "T3", "product": "sms"}]}},
            headers=jobs.headers,
        )
        body = assert_job_contract(response, "/jobs", "post")
        assert response.status_code == 429 and int(response.headers["Retry-After"]) >= 1
        assert body["type"] == "urn:redact:problem:too-many-jobs"
        assert len(client.get(JOBS, headers=jobs.headers).json()["data"]) == 2


def test_a_full_queue_is_503_and_creates_nothing(make_app, database_url, tmp_path):
    app = make_app(database_url, queue_url=f"sqlite:///{tmp_path / 'q.db'}", max_queue_depth=1)
    with app.test_client() as client:
        jobs = JobsClient(client, add_account("acct0001"), app.services.queue)
        add_records(record("T1"), record("T2"))
        first = jobs.create(["T1"], headers={"Idempotency-Key": "k1"})
        response = client.post(
            JOBS,
            json={"objects": {"transactions": [{"id": "T2", "product": "sms"}]}},
            headers=jobs.headers,
        )
        assert_job_contract(response, "/jobs", "post")
        assert response.status_code == 503 and int(response.headers["Retry-After"]) >= 1
        assert len(client.get(JOBS, headers=jobs.headers).json()["data"]) == 1
        # a retry of the first request needs no room in the queue: it gets its job
        assert jobs.create(["T1"], headers={"Idempotency-Key": "k1"})["id"] == first["id"]


def test_an_unreachable_queue_is_503_and_creates_or_moves_nothing(make_app, database_url):
    app = make_app(database_url, queue_url="redis://127.0.0.1:1/0")
    with app.test_client() as client:
        headers = add_account("acct0001")
        add_records(record("T1"))
        response = client.post(
            JOBS,
            json={"objects": {"transactions": [{"id": "T1", "product": "sms"}]}},
            headers=headers,
        )
        body = assert_job_contract(response, "/jobs", "post")
        assert response.status_code == 503
        assert body["type"] == "urn:redact:problem:queue-unavailable"
        with database.connection_context():
            assert RedactionJob.select().count() == 0
            assert JobObject.select().count() == 0


# ------------------------------------------------------------------------- idempotency


def test_idempotency_key_returns_the_same_job_for_the_same_request(jobs):
    add_records(record("T1"), record("T2"))
    key = {"Idempotency-Key": "req-0001"}
    first = jobs.create(["T1"], headers=key)
    again = jobs.client.post(
        JOBS,
        json={"objects": {"transactions": [{"id": "T1", "product": "sms"}]}},
        headers={**jobs.headers, **key},
    )
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first["id"]
    other = jobs.client.post(
        JOBS,
        json={"objects": {"transactions": [{"id": "T2", "product": "sms"}]}},
        headers={**jobs.headers, **key},
    )
    body = assert_job_contract(other, "/jobs", "post")
    assert other.status_code == 409
    assert body["type"] == "urn:redact:problem:idempotency-key-reused"
    assert jobs.create(["T2"])["id"] != first["id"]  # no key: a new job
    assert len(jobs.client.get(JOBS, headers=jobs.headers).json()["data"]) == 2


# -------------------------------------------------------------------------- pagination


def test_pagination_newest_first_with_both_cursors(jobs):
    add_records(*(record(f"T{n}") for n in range(5)))
    ids = [jobs.create([f"T{n}"])["id"] for n in range(5)]
    newest_first = list(reversed(ids))

    def page(**params):
        response = jobs.client.get(JOBS, params=params, headers=jobs.headers)
        body = assert_job_contract(response, "/jobs", "get")
        return [j["id"] for j in body["data"]], body["has_more"]

    assert page(limit=2) == (newest_first[:2], True)
    assert page(limit=2, starting_after=newest_first[1]) == (newest_first[2:4], True)
    assert page(limit=2, starting_after=newest_first[3]) == (newest_first[4:], False)
    assert page(limit=2, ending_before=newest_first[4]) == (newest_first[2:4], True)
    assert page(limit=2, ending_before=newest_first[1]) == (newest_first[:1], False)
    assert page(limit=100) == (newest_first, False)
    assert page(status="validating", limit=100) == (newest_first, False)
    assert page(status="ready") == ([], False)


@pytest.mark.parametrize(
    "params,status",
    [
        ({"limit": 0}, 400),
        ({"limit": 101}, 400),
        ({"starting_after": "job-1"}, 400),
        ({"starting_after": "rj_000000000000000000000000"}, 404),
        ({"ending_before": "rj_000000000000000000000000"}, 404),
    ],
)
def test_bad_paging_parameters(jobs, params, status):
    response = jobs.client.get(JOBS, params=params, headers=jobs.headers)
    assert_job_contract(response, "/jobs", "get")
    assert response.status_code == status


def test_validation_errors_are_paged_in_object_order(jobs):
    job = jobs.create([f"X{n}" for n in range(5)])
    jobs.drain()
    first = jobs.errors(job["id"], limit=3)
    assert [e["object"]["transaction"]["id"] for e in first["data"]] == ["X0", "X1", "X2"]
    assert first["has_more"] is True
    rest = jobs.errors(job["id"], limit=3, starting_after=first["data"][-1]["id"])
    assert [e["object"]["transaction"]["id"] for e in rest["data"]] == ["X3", "X4"]
    assert rest["has_more"] is False
    back = jobs.errors(job["id"], limit=3, ending_before=rest["data"][0]["id"])
    assert back["data"] == first["data"]


# -------------------------------------------------------------------- subject erasure

SUBJECT = "447700900123"


def test_a_subject_job_erases_the_number_across_products_and_only_it(jobs):
    other_account = add_account("acct0002")
    records = [
        record("S-SMS-OUT", to=SUBJECT),
        record("S-SMS-IN", type="inbound", **{"from": "+44 7700 900123"}),
        record("S-VOICE", product="voice", to="0044-7700-900123"),
        record("S-NI", product="number-insight", to=SUBJECT),
        record("S-VERIFY", product="verify", to=SUBJECT),
        record("S-VSDK", product="verify-sdk", to=SUBJECT),
        record("S-MSG", product="messages", **{"from": SUBJECT}),
        record("OTHER-NUMBER", to="447700900999"),
        record("OTHER-ACCOUNT", api_key="acct0002", to=SUBJECT),
    ]
    add_records(*records)
    job = jobs.ready(subjects=["+44 (7700) 900123"])
    assert job["counts"]["records"] == 7
    jobs.action(job["id"], "run", expect=202)
    jobs.drain()
    done = jobs.get(job["id"], **{"expand[]": "objects"})
    assert done["status"] == "succeeded"
    assert done["counts"]["redacted"] == 7
    assert done["objects"]["subjects"] == ["REDACTED"]
    erased = [r["id"] for r in records[:7]]
    assert audit_for(job["id"]) == sorted(erased)
    for transaction_id in erased:
        scrubbed = row(transaction_id)
        assert scrubbed.redacted_at is not None
        assert SUBJECT not in f"{scrubbed.sender}{scrubbed.recipient}"
        assert (scrubbed.sender_key, scrubbed.recipient_key) == (None, None)
    assert row("OTHER-NUMBER").redacted_at is None
    kept = row("OTHER-ACCOUNT")
    assert (kept.redacted_at, kept.api_key, kept.recipient) == (None, "acct0002", SUBJECT)
    # its record stays, under its own account, which can still redact it
    redacted = jobs.client.post(
        "/v1/redact/transaction",
        json={"id": "OTHER-ACCOUNT", "product": "sms"},
        headers=other_account,
    )
    assert redacted.status_code == 204
    with database.connection_context():
        leftovers = JobObject.select().where(
            JobObject.subject.is_null(False) | JobObject.subject_key.is_null(False)
        )
        assert leftovers.count() == 0
        assert RedactionJob.get(RedactionJob.id == job["id"]).request_digest is None


def test_a_job_erases_several_subjects(jobs):
    """Each subject is erased in its own batches while the job reads the next ones (on
    SQLite the job must not hold a read cursor open while its writes commit)."""
    numbers = ["447700900123", "447700900124", "447700900125"]
    add_records(*(record(f"S-{n}-{i}", to=n) for n in numbers for i in range(2)))
    job = jobs.ready(subjects=numbers)
    jobs.action(job["id"], "run", expect=202)
    jobs.drain()
    done = jobs.get(job["id"])
    assert done["status"] == "succeeded"
    assert done["counts"]["redacted"] == 6
    assert audit_for(job["id"]) == sorted(f"S-{n}-{i}" for n in numbers for i in range(2))


def test_records_about_the_subject_that_arrive_before_the_run_are_erased_too(jobs, clock):
    add_records(record("S1", to=SUBJECT))
    job = jobs.ready(subjects=[SUBJECT])
    clock.advance(hours=1)
    add_records(record("S2", now=clock.now, age=datetime.timedelta(minutes=1), **{"from": SUBJECT}))
    jobs.action(job["id"], "run", expect=202)
    jobs.drain()
    assert jobs.get(job["id"])["status"] == "redacting"  # S2 is premature: the run waits
    clock.advance(hours=1)
    jobs.drain()
    assert jobs.get(job["id"])["status"] == "succeeded"
    assert row("S1").redacted_at is not None and row("S2").redacted_at is not None


def test_a_number_in_a_transaction_is_indexed_only_as_a_keyed_hash(jobs):
    add_records(record("K1", to=SUBJECT))
    with database.connection_context():
        stored = Transaction.get(Transaction.id == "K1")
        key = current_store().subject_key
    assert stored.recipient_key == key.hash("+44 7700 900123") != key.hash("447700900124")
    assert SUBJECT not in stored.recipient_key


def test_expanding_a_job_larger_than_the_api_allows_is_422(jobs):
    from app.handlers.jobs import EXPAND_LIMIT

    with database.connection_context():  # as `redact jobs create --transactions FILE` may
        job, _ = create_job(
            api_key="acct0001",
            subjects=[],
            now=START,
            max_unfinished=10,
            transactions=(TransactionRef(f"T{n}", "sms") for n in range(EXPAND_LIMIT + 1)),
        )
    assert jobs.get(job.id)["counts"]["transactions"] == EXPAND_LIMIT + 1
    response = jobs.client.get(
        f"{JOBS}/{job.id}", params={"expand[]": "objects"}, headers=jobs.headers
    )
    body = assert_job_contract(response, "/jobs/{job}", "get")
    assert response.status_code == 422 and "redact jobs show --objects" in body["detail"]
