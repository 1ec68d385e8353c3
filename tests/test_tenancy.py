"""Tenancy: through every operation of the contracts, one account can neither read,
redact, hold, list nor learn the existence of another account's records, jobs, holds,
erasure log, receipts or webhook endpoints (nor be told of another's events),
and one account's policies and holds do not touch another's records of the same id. What it gets
for another account's object is exactly what it gets for one that does not exist."""

from __future__ import annotations

import pytest

from tests.support import (
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
NOBODY_HOLD = "hold_000000000000000000000000"
RECORDS = "/v1/redact/records"
HOLDS = "/v1/redact/holds"


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


@pytest.fixture
def holds_of_a(two_accounts):
    """Account A's hold on its number, A's policy, and the two clients."""
    owner, prober, _ = two_accounts
    response = owner.client.post(
        HOLDS, json={"subjects": [NUMBER], "reason": "A's matter"}, headers=owner.headers
    )
    owner.client.post(
        "/v1/redact/policies",
        json={"products": {"sms": {"auto_redact": "immediate"}}},
        headers=owner.headers,
    )
    return owner, prober, response.json()["id"]


HOLD_OPERATIONS = {
    "retrieve-hold": ("get", "/v1/redact/holds/{hold}"),
    "release-hold": ("post", "/v1/redact/holds/{hold}/release"),
}


@pytest.mark.parametrize("operation", list(HOLD_OPERATIONS))
def test_another_accounts_hold_is_answered_as_a_missing_one(holds_of_a, operation):
    owner, prober, hold_id = holds_of_a
    method, path = HOLD_OPERATIONS[operation]
    theirs = probe_job(prober, method, path.replace("{hold}", "{job}"), hold_id)
    missing = probe_job(prober, method, path.replace("{hold}", "{job}"), NOBODY_HOLD)
    assert theirs.status_code == 404
    same_answer(theirs, missing)
    shown = owner.client.get(f"{HOLDS}/{hold_id}", headers=owner.headers).json()
    assert shown["status"] == "active"


def test_holds_list_and_page_through_only_ones_own(holds_of_a):
    _owner, prober, hold_id = holds_of_a
    assert prober.client.get(HOLDS, headers=prober.headers).json()["data"] == []
    theirs = prober.client.get(HOLDS, params={"starting_after": hold_id}, headers=prober.headers)
    missing = prober.client.get(
        HOLDS, params={"starting_after": NOBODY_HOLD}, headers=prober.headers
    )
    assert theirs.status_code == 404
    same_answer(theirs, missing)


def test_another_accounts_record_cannot_be_read_or_held(holds_of_a):
    _owner, prober, _ = holds_of_a
    read = [
        prober.client.get(f"{RECORDS}/{name}", params={"product": "sms"}, headers=prober.headers)
        for name in ("A-REC", "NO-SUCH-REC")
    ]
    assert read[0].status_code == 404
    same_answer(*read)
    held = [
        prober.client.post(
            HOLDS,
            json={"transactions": [{"id": name, "product": "sms"}], "reason": "probe"},
            headers=prober.headers,
        )
        for name in ("A-REC", "NO-SUCH-REC")
    ]
    assert held[0].status_code == 404
    same_answer(*held)


def test_one_accounts_holds_and_policies_do_not_reach_another(holds_of_a):
    owner, prober, _ = holds_of_a
    # A holds the number and redacts sms on arrival; B's record about it is neither.
    stored = prober.client.post(
        RECORDS,
        json={"records": [{k: v for k, v in record("A-REC", to=NUMBER).items() if k != "api_key"}]},
        headers=prober.headers,
    )
    assert stored.json() == {
        "received": 1,
        "stored": 1,
        "unchanged": 0,
        "redacted_on_arrival": 0,
        "refused": [],
    }
    shown = prober.client.get(
        RECORDS + "/A-REC", params={"product": "sms"}, headers=prober.headers
    ).json()
    assert (shown["held"], shown["holds"], shown["text"]) == (False, [], "hello there")
    policies = prober.client.get("/v1/redact/policies", headers=prober.headers).json()
    assert policies["products"]["sms"]["auto_redact"] == "off"
    redacted = prober.client.post(
        "/v1/redact/transaction", json={"id": "A-REC", "product": "sms"}, headers=prober.headers
    )
    assert redacted.status_code == 204
    # A's record of the same id stays as it was, held.
    assert row("A-REC", "acctaaaa").body == "hello there"
    refused = owner.client.post(
        "/v1/redact/transaction", json={"id": "A-REC", "product": "sms"}, headers=owner.headers
    )
    assert refused.json()["title"] == "Legal Hold"


SUPPRESSIONS = "/v1/redact/suppressions"
SUPPRESSION_OPERATIONS = {
    "retrieve-suppression": "get",
    "lift-suppression": "delete",
}


@pytest.mark.parametrize("operation", list(SUPPRESSION_OPERATIONS))
def test_another_accounts_suppression_is_answered_as_a_missing_one(two_accounts, operation):
    owner, prober, _ = two_accounts
    theirs_id = owner.client.post(
        SUPPRESSIONS, json={"number": NUMBER}, headers=owner.headers
    ).json()["id"]
    method = SUPPRESSION_OPERATIONS[operation]
    answers = [
        prober.client.request(method, f"{SUPPRESSIONS}/{name}", headers=prober.headers)
        for name in (theirs_id, "sup_" + "0" * 32)
    ]
    assert answers[0].status_code == 404
    same_answer(*answers)
    assert prober.client.get(SUPPRESSIONS, headers=prober.headers).json()["data"] == []
    # A's suppression does not refuse B's records, and is still A's.
    stored = prober.client.post(
        RECORDS,
        json={"records": [{k: v for k, v in record("B-REC", to=NUMBER).items() if k != "api_key"}]},
        headers=prober.headers,
    ).json()
    assert (stored["stored"], stored["refused"]) == (1, [])
    mine = owner.client.get(f"{SUPPRESSIONS}/{theirs_id}", headers=owner.headers)
    assert mine.status_code == 200


PROOF_OPERATIONS = {
    "retrieve-tree-head",
    "list-log-entries",
    "retrieve-inclusion-proof",
    "retrieve-consistency-proof",
    "retrieve-record-receipt",
    "retrieve-job-receipt",
    "list-keys",  # public: the service's keys, no account's
}


def test_one_account_sees_nothing_of_anothers_log_or_receipts(two_accounts):
    owner, prober, job_id = two_accounts
    redacted = owner.client.post(
        "/v1/redact/transaction", json={"id": "A-REC2", "product": "sms"}, headers=owner.headers
    )
    assert redacted.status_code == 204
    log = "/v1/redact/log"
    owners = owner.client.get(f"{log}/tree-head", headers=owner.headers).json()
    probers = prober.client.get(f"{log}/tree-head", headers=prober.headers).json()
    assert owners["tree_size"] >= 1 and probers["tree_size"] == 0
    assert probers["root_hash"] != owners["root_hash"]
    for path, params in (
        ("/entries", {"start": 0, "end": 5}),
        ("/proofs/inclusion", {"index": 0, "tree_size": 1}),
        ("/proofs/consistency", {"first": 1, "second": 1}),
    ):
        theirs = prober.client.get(log + path, params=params, headers=prober.headers)
        assert theirs.status_code == 404  # B's log is empty: A's positions are not B's
        assert owner.client.get(log + path, params=params, headers=owner.headers).is_success
    receipt = "/v1/redact/records/{}/receipt"
    assert owner.client.get(
        receipt.format("A-REC2"), params={"product": "sms"}, headers=owner.headers
    ).is_success
    same_answer(
        prober.client.get(
            receipt.format("A-REC2"), params={"product": "sms"}, headers=prober.headers
        ),
        prober.client.get(
            receipt.format("NOBODY"), params={"product": "sms"}, headers=prober.headers
        ),
    )
    theirs = prober.client.get(f"/v1/redact/jobs/{job_id}/receipt", headers=prober.headers)
    assert theirs.status_code == 404
    same_answer(
        theirs,
        prober.client.get(f"/v1/redact/jobs/{NOBODY_JOB}/receipt", headers=prober.headers),
    )


NOBODY_WEBHOOK = "whk_000000000000000000000000"
WEBHOOKS = "/v1/redact/webhooks"


@pytest.fixture
def webhook_of_a(holds_of_a):
    """Account A's webhook endpoint, with an event of A's hold in its outbox."""
    owner, prober, _ = holds_of_a
    response = owner.client.post(
        WEBHOOKS,
        json={"url": "https://a.example/hooks", "events": ["hold.released"]},
        headers=owner.headers,
    )
    endpoint = response.json()
    hold = owner.client.post(
        HOLDS, json={"subjects": [NUMBER], "reason": "another"}, headers=owner.headers
    ).json()
    owner.client.post(f"{HOLDS}/{hold['id']}/release", headers=owner.headers)
    return owner, prober, endpoint


WEBHOOK_OPERATIONS = {
    "retrieve-webhook": ("get", "/v1/redact/webhooks/{webhook}"),
    "delete-webhook": ("delete", "/v1/redact/webhooks/{webhook}"),
    "list-webhook-deliveries": ("get", "/v1/redact/webhooks/{webhook}/deliveries"),
}


@pytest.mark.parametrize("operation", list(WEBHOOK_OPERATIONS))
def test_another_accounts_webhook_is_answered_as_a_missing_one(webhook_of_a, operation):
    owner, prober, endpoint = webhook_of_a
    method, path = WEBHOOK_OPERATIONS[operation]
    theirs = probe_job(prober, method, path.replace("{webhook}", "{job}"), endpoint["id"])
    missing = probe_job(prober, method, path.replace("{webhook}", "{job}"), NOBODY_WEBHOOK)
    assert theirs.status_code == 404
    same_answer(theirs, missing)
    shown = owner.client.get(f"{WEBHOOKS}/{endpoint['id']}", headers=owner.headers).json()
    assert shown["deliveries"]["pending"] == 1


def test_webhooks_list_and_page_through_only_ones_own_and_hear_only_their_events(
    webhook_of_a,
):
    owner, prober, endpoint = webhook_of_a
    assert prober.client.get(WEBHOOKS, headers=prober.headers).json()["data"] == []
    theirs = prober.client.get(
        WEBHOOKS, params={"starting_after": endpoint["id"]}, headers=prober.headers
    )
    missing = prober.client.get(
        WEBHOOKS, params={"starting_after": NOBODY_WEBHOOK}, headers=prober.headers
    )
    assert theirs.status_code == 404
    same_answer(theirs, missing)
    # B's endpoint for every event hears of B's hold, not of A's.
    mine = prober.client.post(
        WEBHOOKS,
        json={"url": "https://b.example/hooks", "events": ["hold.created", "hold.released"]},
        headers=prober.headers,
    ).json()
    owner.client.post(HOLDS, json={"subjects": [NUMBER], "reason": "A's"}, headers=owner.headers)
    prober.client.post(HOLDS, json={"subjects": [NUMBER], "reason": "B's"}, headers=prober.headers)
    deliveries = prober.client.get(
        f"{WEBHOOKS}/{mine['id']}/deliveries", headers=prober.headers
    ).json()["data"]
    assert [d["type"] for d in deliveries] == ["hold.created"]
    assert (
        owner.client.get(WEBHOOKS, headers=owner.headers).json()["data"][0]["id"] == endpoint["id"]
    )


def test_every_operation_is_covered_here():
    covered = (
        set(JOB_OPERATIONS)
        | set(HOLD_OPERATIONS)
        | {"list-jobs", "create-job", "redact-message"}
        | {"store-records", "retrieve-record", "create-hold", "list-holds"}
        | {"retrieve-policies", "update-policies"}
        | PROOF_OPERATIONS
        | set(WEBHOOK_OPERATIONS)
        | {"create-webhook", "list-webhooks"}
        | set(SUPPRESSION_OPERATIONS)
        | {"create-suppression", "list-suppressions"}
    )
    assert (
        operation_ids(spec("redact.yml"))
        | operation_ids(spec("jobs.yml"))
        | operation_ids(spec("records.yml"))
        | operation_ids(spec("proof.yml"))
        | operation_ids(spec("webhooks.yml"))
        == covered
    )
