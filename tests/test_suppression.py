"""Suppression: an account refuses records about a number it suppressed, on every ingest
path (the records API, `redact transactions load`), stores and logs nothing of them, keeps
only a keyed hash of the number, and logs each suppression and lift in its erasure log."""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from models import Transaction, database
from models.erasure.suppression import Suppression
from tests.support import (
    PASSWORD,
    SUBJECT_KEY,
    JobsClient,
    Service,
    add_account,
    basic,
    cli,
    files_containing,
    one_line_error,
    record,
    store_at,
)

RECORDS = "/v1/redact/records"
SUPPRESSIONS = "/v1/redact/suppressions"
NUMBER = "447700900777"
SECRET_TEXT = "NEVER-STORED-3c9d"


def api_record(transaction_id: str, **fields) -> dict:
    return {k: v for k, v in record(transaction_id, **fields).items() if k != "api_key"}


def suppress(client, account, number: str = NUMBER, expect: int = 201) -> dict:
    response = client.post(SUPPRESSIONS, json={"number": number}, headers=account)
    assert response.status_code == expect, response.text
    return response.json()


def entries(client, account) -> list[dict]:
    response = client.get(
        "/v1/redact/log/entries", params={"start": 0, "end": 999}, headers=account
    )
    assert response.status_code == 200, response.text
    return [json.loads(e["entry"]) for e in response.json()["entries"]]


def test_a_suppressed_number_is_refused_and_nothing_of_the_record_is_kept(
    make_app, database_url, tmp_path, caplog
):
    caplog.set_level(logging.DEBUG)
    app = make_app(database_url)
    account = add_account("acct0001")
    keystore = app.services.store.keystore
    with app.test_client() as client:
        made = suppress(client, account)
        assert made["id"].startswith("sup_") and NUMBER not in json.dumps(made)
        # the same number in another format is the same suppression
        assert suppress(client, account, "+44 7700-900777", expect=200)["id"] == made["id"]
        live_keys = keystore.live_count()

        alone = client.post(
            RECORDS,
            json={"records": [api_record("R-ALONE", to=NUMBER, text=SECRET_TEXT)]},
            headers=account,
        )
        assert alone.status_code == 422
        problem = alone.json()
        assert problem["title"] == "Suppressed Number"
        assert problem["errors"] == [
            {"field": "records[0].to", "reason": "the number is suppressed by this account"}
        ]
        assert NUMBER not in alone.text and SECRET_TEXT not in alone.text

        bulk = client.post(
            RECORDS,
            json={
                "records": [
                    api_record("R-1"),
                    api_record("R-2", **{"from": "+44 7700 900777"}, text=SECRET_TEXT),
                    api_record("R-3"),
                ]
            },
            headers=account,
        )
        assert bulk.status_code == 200, bulk.text
        assert bulk.json() == {
            "received": 3,
            "stored": 2,
            "unchanged": 0,
            "redacted_on_arrival": 0,
            "refused": [{"index": 1, "id": "R-2", "reason": "suppressed", "fields": ["from"]}],
        }
        with database.connection_context():
            stored = sorted(t.id for t in Transaction.select())
        assert stored == ["R-1", "R-3"]
        assert keystore.live_count() == live_keys + 2  # no key was made for a refused record
        kinds = [e["kind"] for e in entries(client, account)]
        assert kinds == ["suppression"]

        # lifted: taken again, and the lift is logged
        assert client.delete(f"{SUPPRESSIONS}/{made['id']}", headers=account).status_code == 204
        assert client.get(f"{SUPPRESSIONS}/{made['id']}", headers=account).status_code == 404
        again = client.post(
            RECORDS, json={"records": [api_record("R-ALONE", to=NUMBER)]}, headers=account
        )
        assert again.json()["stored"] == 1
        logged = entries(client, account)
        assert [e["kind"] for e in logged] == ["suppression", "suppression_lift"]
        assert {e["suppression"] for e in logged} == {made["id"]}
    logged = "\n".join(record.getMessage() + str(record.__dict__) for record in caplog.records)
    assert caplog.records, "the service logged its requests"
    assert SECRET_TEXT not in logged and NUMBER not in logged and "7700 900777" not in logged
    if database_url.startswith("sqlite"):
        db_path = tmp_path / "redact.db"
        for marker in (SECRET_TEXT.encode(), NUMBER.encode(), b"R-2"):
            assert files_containing(db_path, marker) == [], marker


def test_the_list_is_keyed_hashes_apart_from_the_subject_index(make_app, sqlite_url):
    app = make_app(sqlite_url)
    account = add_account("acct0001")
    with app.test_client() as client:
        made = suppress(client, account)
        listed = client.get(SUPPRESSIONS, headers=account).json()
    assert [s["id"] for s in listed["data"]] == [made["id"]]
    with database.connection_context():
        (row,) = Suppression.select()
        subject_hash = app.services.store.subject_key.hash(NUMBER)
    assert row.digest not in (NUMBER, subject_hash) and subject_hash[:16] not in row.digest


def test_a_number_that_is_no_number_is_a_422_and_suppresses_nothing(client, account):
    response = client.post(SUPPRESSIONS, json={"number": "ACME Corp"}, headers=account)
    assert response.status_code == 422
    assert "number" in response.json()["detail"]
    assert client.get(SUPPRESSIONS, headers=account).json()["data"] == []


def test_erase_and_suppress_job_suppresses_its_numbers(make_app, sqlite_url, tmp_path):
    app = make_app(sqlite_url, queue_url=f"sqlite:///{tmp_path / 'q.db'}")
    account = add_account("acct0001")
    with app.test_client() as client:
        client.post(RECORDS, json={"records": [api_record("OLD", to=NUMBER)]}, headers=account)
        jobs = JobsClient(client, account, app.services.queue)
        job = jobs.create(subjects=[NUMBER], suppress=True)
        assert [s["id"] for s in client.get(SUPPRESSIONS, headers=account).json()["data"]]
        refused = client.post(
            RECORDS, json={"records": [api_record("NEW", to=NUMBER)]}, headers=account
        )
        assert refused.status_code == 422
        kinds = [e["kind"] for e in entries(client, account)]
        assert "suppression" in kinds
        assert job["id"] in {e.get("trace_id") for e in entries(client, account)}


def test_load_refuses_suppressed_lines_and_keeps_the_rest(env, tmp_path):
    cli(env, "accounts", "create", "--api-key", "acct0001", "--api-secret", PASSWORD, check=True)
    refused = cli(env, "suppressions", "add", "--account", "acct0001", "ACME Corp")
    one_line_error(refused, "number: not a phone number", 1)
    added = cli(env, "suppressions", "add", "--account", "acct0001", NUMBER, check=True)
    suppression = json.loads(added.stdout)
    assert suppression["created"] is True
    lines = [record("L1"), record("L2", to=NUMBER, text=SECRET_TEXT), record("L3")]
    loaded = cli(
        env,
        "transactions",
        "load",
        "-",
        stdin="".join(json.dumps(line) + "\n" for line in lines),
        check=True,
    )
    assert "line 2: refused: its to number is suppressed" in loaded.stderr
    assert NUMBER not in loaded.stderr + loaded.stdout
    assert "loaded 2 transactions; refused 1" in loaded.stdout
    with store_at(env["DATABASE_URL"]), database.connection_context():
        assert sorted(t.id for t in Transaction.select()) == ["L1", "L3"]
    listed = json.loads(cli(env, "suppressions", "list", "--account", "acct0001").stdout)
    assert [s["id"] for s in listed["data"]] == [suppression["id"]]
    lifted = cli(env, "suppressions", "lift", "--account", "acct0001", suppression["id"])
    assert json.loads(lifted.stdout)["lifted"] is True
    unknown = cli(env, "suppressions", "lift", "--account", "acct0001", suppression["id"])
    assert unknown.returncode == 1 and unknown.stderr.count("\n") == 1


@pytest.mark.slow
def test_a_suppression_holds_on_every_worker_within_a_second(tmp_path):
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'redact.db'}",
        "REDACT_SUBJECT_KEY": SUBJECT_KEY,
        "REDACT_RATE_LIMIT": "100000/second",
    }
    with Service(env, tmp_path, workers=2) as service:
        cli(env, "accounts", "create", "--api-key", "acct0001", "--api-secret", PASSWORD)
        headers = basic("acct0001")
        made = httpx.post(f"{service.base}{SUPPRESSIONS}", json={"number": NUMBER}, headers=headers)
        assert made.status_code == 201
        answers = []
        for n in range(40):  # a connection each: the workers share them
            with httpx.Client() as client:
                answers.append(
                    client.post(
                        f"{service.base}{RECORDS}",
                        json={"records": [api_record(f"W{n}", to=NUMBER)]},
                        headers=headers,
                    ).status_code
                )
        assert answers == [422] * 40
