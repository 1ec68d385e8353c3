"""The proof API (openapi/proof.yml) through the app: the erasure log grows with every
kind of change, its tree heads, entries and proofs check out with the RFC's verifiers,
receipts for every way a record is redacted verify offline with the published keys, and
no account sees another's log, receipts or tree heads."""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import json
import os
import sqlite3
import stat
import threading
import time

import psycopg2
import pytest

from models import current_store, database
from models.proof.heads import TreeHead
from models.proof.merkle import leaf_hash, verify_consistency, verify_inclusion
from models.proof.receipts import verify_receipt
from models.proof.signing import key_set, verify
from models.store.keys import SigningKey
from models.worker.maintenance import vacuum_erased
from tests.support import (
    POSTGRES_URL,
    SIGNING_KEY,
    JobsClient,
    add_account,
    add_records,
    assert_matches_contract,
    record,
)

LOG = "/v1/redact/log"
KEYS = "/v1/redact/keys"
NUMBER = b"447700900002"  # the `to` of support.record


def matches(response, path: str):
    return assert_matches_contract(response, path, "get", "proof.yml")


def redact(client, headers, id: str, product: str = "sms"):
    response = client.post(
        "/v1/redact/transaction", json={"id": id, "product": product}, headers=headers
    )
    assert response.status_code == 204, response.text


def get(client, headers, path: str, expect: int = 200, **params):
    response = client.get(path, params=params, headers=headers)
    assert response.status_code == expect, response.text
    contract_path = path.removeprefix("/v1/redact")
    if contract_path.startswith("/records/"):
        contract_path = "/records/{id}/receipt"
    elif contract_path.startswith("/jobs/"):
        contract_path = "/jobs/{job}/receipt"
    return matches(response, contract_path)


def keys(client) -> list[dict]:
    return get(client, {}, KEYS)["keys"]


def receipt(client, headers, id: str, expect: int = 200, **params):
    params.setdefault("product", "sms")
    return get(client, headers, f"/v1/redact/records/{id}/receipt", expect, **params)


def head(client, headers) -> tuple[dict, dict]:
    """The tree head as answered, and its signed document (checked)."""
    answer = get(client, headers, f"{LOG}/tree-head")
    _, document = verify(answer["signature"], key_set(keys(client)))
    assert document == {
        "account": document["account"],
        "tree_size": answer["tree_size"],
        "root_hash": answer["root_hash"],
        "timestamp": document["timestamp"],
        "key_id": answer["key_id"],
    }
    return answer, document


def b64d(text: str) -> bytes:
    return base64.b64decode(text)


def test_every_api_redaction_is_an_entry_proven_in_the_signed_tree(client, account):
    add_records(*(record(f"T{n}") for n in range(5)))
    for n in range(5):
        redact(client, account, f"T{n}")
    answer, document = head(client, account)
    assert document["account"] == "acct0001" and answer["tree_size"] == 5

    listed = get(client, account, f"{LOG}/entries", start=0, end=10)["entries"]
    assert [e["index"] for e in listed] == [0, 1, 2, 3, 4]
    for item in listed:
        entry = json.loads(item["entry"])
        assert entry["kind"] == "redaction" and entry["source"] == "api"
        assert entry["record"] == {"id": f"T{item['index']}", "product": "sms", "type": "outbound"}
        assert entry["fields"] == ["from", "to", "text"]
        assert b"4477009" not in item["entry"].encode() and "hello" not in item["entry"]
        assert b64d(item["leaf_hash"]) == leaf_hash(item["entry"].encode())
        proof = get(client, account, f"{LOG}/proofs/inclusion", index=item["index"], tree_size=5)
        path = [b64d(h) for h in proof["inclusion_proof"]]
        root = b64d(answer["root_hash"])
        assert verify_inclusion(item["index"], 5, b64d(item["leaf_hash"]), path, root)
        assert not verify_inclusion(item["index"], 5, leaf_hash(b"forged"), path, root)


@contextlib.contextmanager
def log_held(database_url: str, exclusive: bool = False):
    """Another connection holds the acct0001 log as a job's batch does: its `log_state`
    row FOR UPDATE (PostgreSQL), the SQLite file's write lock (`exclusive`: as while a
    batch commits, when readers are kept out too). Let go after 5 s at most, so that a
    request that waits shows as slow rather than hanging."""
    if database_url.startswith("sqlite"):
        path = database_url.removeprefix("sqlite:///")
        held = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        held.execute("BEGIN EXCLUSIVE" if exclusive else "BEGIN IMMEDIATE")
    else:
        held = psycopg2.connect(POSTGRES_URL)
        held.cursor().execute("SELECT 1 FROM log_state WHERE api_key = 'acct0001' FOR UPDATE")
    timer = threading.Timer(5, held.rollback)
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        held.rollback()
        held.close()


def test_a_tree_head_does_not_wait_for_a_writer_holding_the_log(client, account, database_url):
    newest_head_while_held(client, account, database_url, exclusive=False)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_tree_head_does_not_wait_for_a_commit_that_locks_out_readers(
    client, account, database_url
):
    """SQLite only: a rollback-journal commit keeps even readers out (PostgreSQL's readers
    never wait for a writer)."""
    newest_head_while_held(client, account, database_url, exclusive=True)


def newest_head_while_held(client, account, database_url: str, *, exclusive: bool) -> None:
    add_records(*(record(f"T{n}") for n in range(3)))
    redact(client, account, "T0")
    assert head(client, account)[0]["tree_size"] == 1
    redact(client, account, "T1")
    with log_held(database_url, exclusive):
        started = time.monotonic()
        response = client.get(f"{LOG}/tree-head", headers=account)
        assert time.monotonic() - started < 2  # not the 5 s the lock is held
    answer = matches(response, "/log/tree-head")
    _, document = verify(answer["signature"], key_set(keys(client)))
    assert answer["tree_size"] == document["tree_size"] == 1  # the newest head signed
    assert head(client, account)[0]["tree_size"] == 2  # the log is free: signed now


def test_a_later_tree_head_is_proven_to_extend_an_earlier_one(client, account, clock):
    add_records(*(record(f"T{n}") for n in range(11)))
    redact(client, account, "T0")
    redact(client, account, "T1")
    redact(client, account, "T2")
    first, _ = head(client, account)
    assert head(client, account)[0] == first  # unchanged log: the same head
    for n in range(3, 11):
        redact(client, account, f"T{n}")
    clock.advance(minutes=1)
    second, _ = head(client, account)
    assert (first["tree_size"], second["tree_size"]) == (3, 11)
    proof = get(client, account, f"{LOG}/proofs/consistency", first=3, second=11)
    path = [b64d(h) for h in proof["consistency_proof"]]
    old, new = b64d(first["root_hash"]), b64d(second["root_hash"])
    assert verify_consistency(3, 11, old, new, path)
    assert not verify_consistency(3, 11, leaf_hash(b"another history"), new, path)


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/entries", {"start": 3, "end": 2}),
        ("/entries", {"start": 4, "end": 9}),
        ("/proofs/inclusion", {"index": 2, "tree_size": 2}),
        ("/proofs/inclusion", {"index": 0, "tree_size": 5}),
        ("/proofs/consistency", {"first": 3, "second": 2}),
        ("/proofs/consistency", {"first": 1, "second": 5}),
    ],
)
def test_positions_outside_the_log_are_404(client, account, path, params):
    add_records(*(record(f"T{n}") for n in range(4)))
    for n in range(4):
        redact(client, account, f"T{n}")
    problem = get(client, account, LOG + path, 404, **params)
    assert problem["type"] == "urn:redact:problem:invalid-log-range"


@pytest.mark.parametrize("value", ["x", "-1", "1.5"])
def test_a_position_that_is_no_whole_number_is_400(client, account, value):
    get(client, account, f"{LOG}/entries", 400, start=value, end=3)


def test_api_receipt_verifies_offline_and_states_what_erasure_means(client, account, database_url):
    add_records(record("T1", carrier_note="personal"))
    redact(client, account, "T1")
    answer = receipt(client, account, "T1")
    document = verify_receipt(answer["receipt"], keys(client))
    assert document == answer["document"]
    assert document["record"] == {"id": "T1", "product": "sms", "type": "outbound"}
    assert (document["source"], document["job"]) == ("api", None)
    assert document["fields"] == ["from", "to", "text", "details.carrier_note"]
    if database_url.startswith("sqlite"):
        assert document["erasure"]["status"] == "complete"
        assert document["erasure"]["store"] == "sqlite"
    else:  # until maintenance has vacuumed (test_postgres_receipt_is_pending_until...)
        assert document["erasure"]["status"] == "pending"
    assert "personal" not in answer["receipt"] and "4477009" not in json.dumps(document)

    # Any change to what was signed is caught.
    header, payload, signature = answer["receipt"].split(".")
    forged = json.loads(base64.urlsafe_b64decode(payload + "=="))
    forged["record"]["id"] = "T2"
    forged_payload = base64.urlsafe_b64encode(json.dumps(forged).encode()).decode().rstrip("=")
    with pytest.raises(ValueError, match="signature"):
        verify_receipt(f"{header}.{forged_payload}.{signature}", keys(client))


def test_receipt_of_a_record_not_redacted_is_409_and_of_another_accounts_404(client, account):
    other = add_account("acct0002")
    add_records(record("T1"), record("T2"), record("THEIRS", api_key="acct0002"))
    redact(client, other, "THEIRS")
    problem = receipt(client, account, "T1", 409)
    assert problem["type"] == "urn:redact:problem:no-receipt"
    receipt(client, account, "THEIRS", 404)
    receipt(client, account, "T1", 404, product="voice")
    receipt(client, account, "T1", 404, type="inbound")
    receipt(client, account, "NOPE", 404)
    redact(client, account, "T1")
    # Each account's log and tree head are its own.
    mine, _ = head(client, account)
    theirs, document = head(client, other)
    assert (mine["tree_size"], theirs["tree_size"]) == (1, 1)
    assert document["account"] == "acct0002" and mine["root_hash"] != theirs["root_hash"]
    (entry,) = get(client, other, f"{LOG}/entries", start=0, end=5)["entries"]
    assert json.loads(entry["entry"])["record"]["id"] == "THEIRS"


def test_an_empty_log_has_a_signed_head_of_size_zero(client, account):
    answer, _ = head(client, account)
    assert answer["tree_size"] == 0
    assert b64d(answer["root_hash"]) == hashlib.sha256(b"").digest()
    get(client, account, f"{LOG}/entries", 404, start=0, end=0)


def test_a_job_receipt_covers_its_records_by_log_ranges(make_app, database_url, tmp_path):
    app = make_app(database_url, queue_url=f"sqlite:///{tmp_path / 'queue.db'}")
    headers = add_account("acct0001")
    add_records(*(record(f"T{n}") for n in range(6)), record("SOLO"))
    with app.test_client() as client:
        jobs = JobsClient(client, headers, app.services.queue)
        redact(client, headers, "SOLO")  # entry 0
        job = jobs.ready([f"T{n}" for n in range(6)])
        assert get(client, headers, f"/v1/redact/jobs/{job['id']}/receipt", 409)["type"] == (
            "urn:redact:problem:no-receipt"
        )
        jobs.action(job["id"], "run", expect=202)
        jobs.drain()
        answer = get(client, headers, f"/v1/redact/jobs/{job['id']}/receipt")
        document = verify_receipt(answer["receipt"], keys(client))
        assert document["job"]["id"] == job["id"] and document["job"]["status"] == "succeeded"
        assert document["job"]["redacted"] == 6
        assert document["records"] == {"count": 6, "ranges": [[1, 6]]}
        # The ranges name the job's redactions, and nothing else.
        listed = get(client, headers, f"{LOG}/entries", start=1, end=6)["entries"]
        assert {json.loads(e["entry"])["job"] for e in listed} == {job["id"]}
        assert {json.loads(e["entry"])["source"] for e in listed} == {"job"}

        other = add_account("acct0002")
        get(client, other, f"/v1/redact/jobs/{job['id']}/receipt", 404)


def test_receipts_for_retention_and_policy_on_arrival(make_app, database_url, clock, tmp_path):
    app = make_app(database_url, queue_url=f"sqlite:///{tmp_path / 'q.db'}")
    headers = add_account("acct0001")
    old = datetime.timedelta(days=40)
    with app.test_client() as client:
        records = [{k: v for k, v in record("OLD", age=old).items() if k != "api_key"}]
        assert client.post("/v1/redact/records", json={"records": records}, headers=headers)
        policy = {"products": {"sms": {"auto_redact": "after", "after_days": 30}}}
        assert client.post("/v1/redact/policies", json=policy, headers=headers).status_code == 200
        assert app.services.queue.retention().redacted == 1
        document = verify_receipt(receipt(client, headers, "OLD")["receipt"], keys(client))
        assert document["source"] == "retention"
        assert document["trace_id"].startswith("retention:")

        policy = {"products": {"voice": {"auto_redact": "immediate"}}}
        assert client.post("/v1/redact/policies", json=policy, headers=headers).status_code == 200
        voice = {k: v for k, v in record("V1", product="voice").items() if k != "api_key"}
        stored = client.post("/v1/redact/records", json={"records": [voice]}, headers=headers)
        assert stored.json()["redacted_on_arrival"] == 1
        answer = receipt(client, headers, "V1", product="voice")
        document = verify_receipt(answer["receipt"], keys(client))
        assert (document["source"], document["fields"]) == ("policy", ["from", "to"])

        kinds = [
            json.loads(e["entry"])["kind"]
            for e in get(client, headers, f"{LOG}/entries", start=0, end=99)["entries"]
        ]
        assert kinds == ["policy.changed", "redaction", "policy.changed", "redaction"]


def test_holds_and_policy_changes_are_entries_without_the_reason(client, account):
    add_records(record("T1"))
    created = client.post(
        "/v1/redact/holds",
        json={
            "reason": "Smith v. Jones, personal",
            "transactions": [{"id": "T1", "product": "sms"}],
        },
        headers=account,
    ).json()
    client.post(f"/v1/redact/holds/{created['id']}/release", headers=account)
    listed = get(client, account, f"{LOG}/entries", start=0, end=9)["entries"]
    entries = [json.loads(e["entry"]) for e in listed]
    assert [e["kind"] for e in entries] == ["hold.created", "hold.released"]
    assert {e["target"] for e in entries} == {created["id"]}
    assert entries[0]["after"] == {"subjects": 0, "transactions": 1}
    assert all("Smith" not in e["entry"] for e in listed)


def test_keys_stay_listed_after_rotation_and_old_receipts_still_verify(
    make_app, database_url, tmp_path
):
    app = make_app(database_url, signing_key=SIGNING_KEY)
    headers = add_account("acct0001")
    add_records(record("T1"), record("T2"))
    with app.test_client() as client:
        redact(client, headers, "T1")
        old = receipt(client, headers, "T1")["receipt"]
    rotated = SigningKey.generate()
    app = make_app(database_url, signing_key=rotated.export(), keep_tables=True)
    with app.test_client() as client:
        redact(client, headers, "T2")
        new = receipt(client, headers, "T2")["receipt"]
        listed = keys(client)
        assert [k["kid"] for k in listed] == [SigningKey.parse(SIGNING_KEY).kid, rotated.kid]
        assert all("d" not in k for k in listed)
        for token in (old, new):
            verify_receipt(token, listed)
        assert json.loads(base64.urlsafe_b64decode(new.split(".")[0] + "=="))["kid"] == rotated.kid


@pytest.mark.postgres
def test_postgres_receipt_is_pending_until_maintenance_then_complete(make_app, clock):
    app = make_app(POSTGRES_URL)
    headers = add_account("acct0001")
    add_records(record("T1"))
    with app.test_client() as client:
        redact(client, headers, "T1")
        pending = verify_receipt(receipt(client, headers, "T1")["receipt"], keys(client))
        assert pending["erasure"]["status"] == "pending"
        assert pending["erasure"]["store"] == "postgresql"
        assert pending["erasure"]["next_maintenance"] == "2026-11-02T03:15:00.000000Z"
        # A transaction open since before the VACUUM may still see the old row version:
        # the run erases nothing it can vouch for, and says so by writing no entry.
        reader = psycopg2.connect(POSTGRES_URL)
        try:
            reader.set_session(isolation_level="REPEATABLE READ")
            reader.cursor().execute('SELECT count(*) FROM "transaction"')
            with database.connection_context():
                assert vacuum_erased(current_store().database) != []
            again = verify_receipt(receipt(client, headers, "T1")["receipt"], keys(client))
            assert again["erasure"]["status"] == "pending"
        finally:
            reader.close()
        with database.connection_context():
            assert vacuum_erased(current_store().database) != []
        complete = verify_receipt(receipt(client, headers, "T1")["receipt"], keys(client))
        assert complete["erasure"]["status"] == "complete"
        entry = json.loads(complete["erasure"]["maintenance"]["entry"])
        assert entry["kind"] == "maintenance" and entry["erased_before"] == 1


def test_the_worker_signs_a_head_for_every_log_that_grew(make_app, database_url, clock, tmp_path):
    app = make_app(database_url, queue_url=f"sqlite:///{tmp_path / 'q.db'}")
    headers = add_account("acct0001")
    other = add_account("acct0002")
    add_records(record("T1"), record("T2"), record("THEIRS", api_key="acct0002"))
    queue = app.services.queue
    with app.test_client() as client:
        redact(client, headers, "T1")
        redact(client, other, "THEIRS")
        assert queue.sign_tree_heads() == 2
        assert queue.sign_tree_heads() == 0  # nothing grew since
        clock.advance(minutes=1)
        redact(client, headers, "T2")
        assert queue.sign_tree_heads() == 1
        answer, document = head(client, headers)  # the worker's, not a new one
        assert answer["tree_size"] == 2
        assert document["timestamp"] == "2026-11-01T12:01:00.000000Z"
        with database.connection_context():
            sizes = [h.tree_size for h in TreeHead.select().where(TreeHead.api_key == "acct0001")]
        assert sorted(sizes) == [1, 2]


def test_a_detail_named_with_a_lone_surrogate_is_redacted_and_receipted(client, account):
    """JSON may escape half a surrogate pair; such a detail's name is scrubbed and logged
    like any other (the log's JSON escapes it in turn), and the batch fails no one."""
    add_records(record("T1", **{"\ud800x": "personal"}), record("T2"))
    redact(client, account, "T1")
    redact(client, account, "T2")
    document = verify_receipt(receipt(client, account, "T1")["receipt"], keys(client))
    assert document["fields"] == ["from", "to", "text", "details.\ud800x"]


@pytest.mark.parametrize(
    ("claim", "value"),
    [("redacted_at", "2020-01-01T00:00:00.000000Z"), ("fields", ["from"]), ("source", "job")],
)
def test_a_receipt_that_says_other_than_its_log_entry_is_refused(client, account, claim, value):
    """A receipt signed with the service's own key but claiming what its proven log entry
    does not (as a service that lied would sign) fails verification."""
    add_records(record("T1"))
    redact(client, account, "T1")
    _, document = verify(receipt(client, account, "T1")["receipt"], key_set(keys(client)))
    document[claim] = value
    lie = current_store().signer().sign(document, "redact-receipt+jws")
    with pytest.raises(ValueError, match="not its log entry's"):
        verify_receipt(lie, keys(client))


def test_a_canceled_jobs_receipt_says_it_redacted_nothing(make_app, database_url, tmp_path):
    app = make_app(database_url, queue_url=f"sqlite:///{tmp_path / 'queue.db'}")
    headers = add_account("acct0001")
    add_records(record("T1"))
    with app.test_client() as client:
        jobs = JobsClient(client, headers, app.services.queue)
        job = jobs.ready(["T1"])
        jobs.action(job["id"], "cancel", expect=200)
        jobs.drain()
        assert jobs.get(job["id"])["status"] == "canceled"
        answer = get(client, headers, f"/v1/redact/jobs/{job['id']}/receipt")
        document = verify_receipt(answer["receipt"], keys(client))
        assert document["job"]["status"] == "canceled"
        assert document["records"] == {"count": 0, "ranges": []}


def test_secrets_beside_an_sqlite_store_are_the_owners_alone(make_app, tmp_path):
    """Even under a umask that lets everyone read, the signing key, the subject key and
    the key-encryption key an SQLite store keeps beside it are readable by its owner
    alone (0600)."""
    previous = os.umask(0)
    try:
        app = make_app(f"sqlite:///{tmp_path / 'redact.db'}", subject_key="")
        client = app.test_client()
        account = add_account("acct0001")
        add_records(record("T1"))
        redact(client, account, "T1")
        receipt(client, account, "T1")  # signs a tree head: the signing key is made
    finally:
        os.umask(previous)
    secrets = [
        path for path in tmp_path.iterdir() if path.name.endswith((".signing-key", ".key", ".kek"))
    ]
    assert {p.name.rsplit(".", 1)[-1] for p in secrets} >= {"signing-key", "key"}, secrets
    for path in secrets:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, (path.name, oct(path.stat().st_mode))
