"""Tenancy: through every operation of both contracts, one account can neither read,
redact, list nor learn the existence of another account's records or jobs. What it gets
for another account's object is exactly what it gets for one that does not exist."""

from __future__ import annotations

import pytest

from .support import (
    JOBS,
    JobsClient,
    add_account,
    add_records,
    operation_ids,
    record,
    row,
    spec,
)

NUMBER = "447700988801"
NOBODY_JOB = "rj_000000000000000000000000"


@pytest.fixture
def two_accounts(make_app, database_url, tmp_path):
    """Account A with a record, a job and the number; account B, the probe."""
    app = make_app(database_url, queue_url=f"sqlite:///{tmp_path / 'q.db'}")
    with app.test_client() as client:
        owner = JobsClient(client, add_account("acctaaaa"), app.services.queue)
        add_records(
            record("A-REC", api_key="acctaaaa", to=NUMBER), record("A-REC2", api_key="acctaaaa")
        )
        job = owner.create(["A-REC2"])
        owner.drain()
        prober = JobsClient(client, add_account("acctbbbb"), app.services.queue)
        yield owner, prober, job["id"]


def same_answer(first, second) -> None:
    """Two responses that tell nothing apart: status and body, but for the trace id and
    the id the request itself named."""
    assert first.status_code == second.status_code
    a, b = first.json(), second.json()
    for body in (a, b):
        body.pop("instance", None)
    assert a.keys() == b.keys()
    assert a.get("type") == b.get("type") and a.get("title") == b.get("title")


def probe_job(prober: JobsClient, method: str, path: str, job_id: str, **kwargs):
    return getattr(prober.client, method)(
        path.replace("{job}", job_id), headers=prober.headers, **kwargs
    )


JOB_OPERATIONS = {
    "retrieve-job": ("get", "/jobs/{job}", {}),
    "update-job": ("post", "/jobs/{job}", {"json": {"description": "mine now"}}),
    "validate-job": ("post", "/jobs/{job}/validate", {}),
    "run-job": ("post", "/jobs/{job}/run", {}),
    "cancel-job": ("post", "/jobs/{job}/cancel", {}),
    "list-validation-errors": ("get", "/jobs/{job}/validation_errors", {}),
}


@pytest.mark.parametrize("operation", list(JOB_OPERATIONS))
def test_another_accounts_job_is_answered_as_a_missing_one(two_accounts, operation):
    owner, prober, job_id = two_accounts
    method, path, kwargs = JOB_OPERATIONS[operation]
    theirs = probe_job(prober, method, f"/v1/redact{path}", job_id, **kwargs)
    missing = probe_job(prober, method, f"/v1/redact{path}", NOBODY_JOB, **kwargs)
    assert theirs.status_code == 404
    same_answer(theirs, missing)
    untouched = owner.get(job_id)
    assert (untouched["status"], untouched["description"]) == ("ready", None)


def test_listing_shows_and_pages_through_only_ones_own_jobs(two_accounts):
    _owner, prober, job_id = two_accounts
    assert prober.client.get(JOBS, headers=prober.headers).json()["data"] == []
    theirs = prober.client.get(JOBS, params={"starting_after": job_id}, headers=prober.headers)
    missing = prober.client.get(JOBS, params={"starting_after": NOBODY_JOB}, headers=prober.headers)
    assert theirs.status_code == 404
    same_answer(theirs, missing)
    assert (
        prober.client.get(JOBS, params={"status": "ready"}, headers=prober.headers).json()["data"]
        == []
    )


def test_another_accounts_record_cannot_be_redacted_or_detected(two_accounts):
    _owner, prober, _ = two_accounts
    theirs = prober.client.post(
        "/v1/redact/transaction", json={"id": "A-REC", "product": "sms"}, headers=prober.headers
    )
    missing = prober.client.post(
        "/v1/redact/transaction",
        json={"id": "NO-SUCH-REC", "product": "sms"},
        headers=prober.headers,
    )
    assert theirs.status_code == 404
    same_answer(theirs, missing)
    assert theirs.json()["detail"] == "ID 'A-REC' could not be found (type=MT)"


def test_a_job_cannot_name_another_accounts_records_or_find_its_subjects(two_accounts):
    owner, prober, _ = two_accounts
    job = prober.create(["A-REC"], [NUMBER])
    prober.drain()
    assert prober.get(job["id"])["status"] == "failed"
    codes = sorted(e["code"] for e in prober.errors(job["id"])["data"])
    assert codes == ["subject_has_no_records", "unknown_transaction"]
    prober.client.post(f"{JOBS}/{job['id']}/cancel", headers=prober.headers)
    owner_record = owner.client.post(
        "/v1/redact/transaction", json={"id": "A-REC", "product": "sms"}, headers=owner.headers
    )
    assert owner_record.status_code == 204  # it was still there, unredacted, for its owner


def test_two_accounts_may_hold_the_same_id_and_each_redacts_only_its_own(two_accounts):
    _owner, prober, _ = two_accounts
    add_records(record("A-REC2", api_key="acctbbbb", text="bee's own text"))
    # A's ready job names A-REC2: it holds A's record, not B's.
    job = prober.ready(["A-REC2"])
    assert prober.errors(job["id"])["data"] == []
    redacted = prober.client.post(
        "/v1/redact/transaction", json={"id": "A-REC2", "product": "sms"}, headers=prober.headers
    )
    assert redacted.status_code == 204
    assert row("A-REC2", "acctbbbb").body == "REDACTED"
    assert row("A-REC2", "acctaaaa").body == "hello there"


def test_every_operation_is_covered_here():
    covered = set(JOB_OPERATIONS) | {"list-jobs", "create-job", "redact-message"}
    assert operation_ids(spec("redact.yml")) | operation_ids(spec("jobs.yml")) == covered
