"""The records API (openapi/records.yml) through the app: storing records all or nothing
and idempotently, reading one back before and after each kind of redaction, retention
policies (with a controlled clock), and legal holds against every kind of redaction."""

from __future__ import annotations

import datetime

import pytest

from models import AuditEvent, RedactionAudit, Transaction, current_store, database
from tests.support import (
    JOBS,
    JobsClient,
    add_account,
    add_records,
    assert_matches_contract,
    files_containing,
    record,
    row,
)

RECORDS = "/v1/redact/records"
POLICIES = "/v1/redact/policies"
HOLDS = "/v1/redact/holds"
NUMBER = "447700900002"  # the `to` of support.record
OLD = datetime.timedelta(days=40)


def matches(response, path: str, method: str = "get"):
    return assert_matches_contract(response, path, method, "records.yml")


def api_record(id: str, **fields) -> dict:
    """A record as a client sends it (no api_key: the account that sends it owns it)."""
    data = record(id, **fields)
    data.pop("api_key")
    return data


def store(client, headers, *records, expect: int = 200):
    response = client.post(RECORDS, json={"records": list(records)}, headers=headers)
    assert response.status_code == expect, response.text
    return matches(response, "/records", "post")


def read(client, headers, id: str, expect: int = 200, **params):
    params.setdefault("product", "sms")
    response = client.get(f"{RECORDS}/{id}", params=params, headers=headers)
    assert response.status_code == expect, response.text
    return matches(response, "/records/{id}")


def set_policy(client, headers, expect: int = 200, **products):
    response = client.post(POLICIES, json={"products": products}, headers=headers)
    assert response.status_code == expect, response.text
    return matches(response, "/policies", "post")


def hold(client, headers, expect: int = 200, reason: str = "matter 7", **objects):
    response = client.post(HOLDS, json={"reason": reason, **objects}, headers=headers)
    assert response.status_code == expect, response.text
    return matches(response, "/holds", "post")


def redact(client, headers, id: str, **body):
    return client.post(
        "/v1/redact/transaction", json={"id": id, "product": "sms", **body}, headers=headers
    )


def count(query) -> int:
    with database.connection_context():
        return query.count()


# ------------------------------------------------------------------------------- records


def test_records_are_stored_and_read_back_as_sent(client, account):
    counts = store(
        client,
        account,
        api_record("R1", status="delivered", price="0.03"),
        api_record("R2", product="voice", duration=61),
        api_record("R3", type="inbound", text="hi back"),
    )
    assert counts == {
        "received": 3,
        "stored": 3,
        "unchanged": 0,
        "redacted_on_arrival": 0,
        "refused": [],
    }
    first = read(client, account, "R1")
    assert first == {
        "id": "R1",
        "product": "sms",
        "type": "outbound",
        "created_at": "2026-11-01T10:00:00+00:00",
        "from": "447700900001",
        "to": NUMBER,
        "text": "hello there",
        "status": "delivered",
        "price": "0.03",
        "redaction": None,
        "held": False,
        "holds": [],
    }
    voice = read(client, account, "R2", product="voice")
    assert (voice["duration"], "type" in voice) == (61, False)
    assert read(client, account, "R3", type="inbound")["text"] == "hi back"
    # The number index is built as records arrive, as the load command builds it.
    with database.connection_context():
        expected = current_store().subject_key.hash(NUMBER)
        assert expected is not None and row("R1").recipient_key == expected


def test_a_wrong_product_type_or_id_is_a_404_naming_the_kind(client, account):
    store(client, account, api_record("R1"), api_record("R2", product="voice"))
    for id, params, kind in (
        ("R1", {"product": "voice"}, "voice"),
        ("R1", {"product": "sms", "type": "inbound"}, "MO"),
        ("R2", {"product": "sms"}, "MT"),
        ("NOPE", {"product": "sms"}, "MT"),
    ):
        body = read(client, account, id, expect=404, **params)
        assert body["detail"] == f"ID '{id}' could not be found (type={kind})"


def test_a_bad_record_in_the_middle_stores_nothing_and_each_problem_is_listed(client, account):
    good = [api_record(f"G{n}") for n in range(5)]
    bad = [
        {**api_record("B1"), "created_at": "yesterday"},
        {"id": "", "product": "fax", "created_at": "2026-11-01T00:00:00Z"},
        "not an object",
        {**api_record("B4", product="voice"), "type": "inbound"},
        {**api_record("B5"), "held": True, "from_": "x"},
        {**api_record("B6"), "api_key": "acct0001"},  # even its own: the sender owns them
    ]
    response = client.post(RECORDS, json={"records": good[:2] + bad + good[2:]}, headers=account)
    body = matches(response, "/records", "post")
    assert response.status_code == 422
    assert body["title"] == "Invalid Records" and body["count"] == 8
    assert body["errors"] == [
        {"field": "records[2].created_at", "reason": "must be a date and time"},
        {"field": "records[3].id", "reason": "must be 1 to 64 characters"},
        {
            "field": "records[3].product",
            "reason": "must be one of: sms, voice, number-insight, verify, verify-sdk, messages",
        },
        {"field": "records[4]", "reason": "must be a JSON object"},
        {"field": "records[5].type", "reason": "only SMS records have a type"},
        {"field": "records[6].from_", "reason": "a name the service uses; not a record field"},
        {"field": "records[6].held", "reason": "a name the service uses; not a record field"},
        {
            "field": "records[7].api_key",
            "reason": "leave it out: records belong to the account that sends them",
        },
    ]
    assert count(Transaction.select()) == 0


def test_only_the_first_hundred_problems_are_listed(client, account):
    records = [{"id": f"X{n}"} for n in range(60)]  # two problems each
    response = client.post(RECORDS, json={"records": records}, headers=account)
    body = matches(response, "/records", "post")
    assert (response.status_code, body["count"], len(body["errors"])) == (422, 120, 100)


def test_storing_is_idempotent_per_id_and_a_conflict_stores_nothing(client, account):
    store(client, account, api_record("R1"), api_record("R2"))
    again = store(client, account, api_record("R1"), api_record("R2"), api_record("R3"))
    assert again == {
        "received": 3,
        "stored": 1,
        "unchanged": 2,
        "redacted_on_arrival": 0,
        "refused": [],
    }
    twice = store(client, account, api_record("R4"), api_record("R4"))
    assert (twice["stored"], twice["unchanged"]) == (1, 1)

    for records in (
        [api_record("R5"), api_record("R1", text="edited")],  # against the store
        [api_record("R6"), api_record("R6", text="other")],  # within the request
    ):
        response = client.post(RECORDS, json={"records": records}, headers=account)
        body = matches(response, "/records", "post")
        assert (response.status_code, body["title"]) == (409, "Record Conflict")
    assert (
        "'R1'"
        in client.post(
            RECORDS, json={"records": [api_record("R1", text="edited")]}, headers=account
        ).json()["detail"]
    )
    assert count(Transaction.select()) == 4
    assert row("R1").body == "hello there"


def test_a_redacted_record_sent_again_is_unchanged_and_stays_redacted(client, account):
    store(client, account, api_record("R1", status="sent"))
    assert redact(client, account, "R1").status_code == 204
    again = store(client, account, api_record("R1", status="sent"))
    assert (again["unchanged"], again["stored"]) == (1, 0)
    assert row("R1").body == "REDACTED"
    other = client.post(
        RECORDS, json={"records": [api_record("R1", status="failed")]}, headers=account
    )
    assert other.status_code == 409  # a kept field differs: another record


def test_connexion_refuses_what_is_not_a_list_of_up_to_1000_objects(client, account):
    for body, reason in (
        ({"records": []}, "must not be empty"),
        ({"records": {}}, "must be an array"),
        ({}, "is required"),
        ({"records": [{}] * 1001}, "must hold at most 1000 items"),
    ):
        response = client.post(RECORDS, json=body, headers=account)
        problem = matches(response, "/records", "post")
        assert response.status_code == 422, response.text
        assert problem["title"] == "Invalid Request"
        assert problem["errors"] == [{"field": "records", "reason": reason}]
    assert count(Transaction.select()) == 0


def test_read_back_after_each_kind_of_redaction(make_app, database_url, tmp_path, clock):
    app = make_app(database_url, queue_url=f"sqlite:///{tmp_path / 'q.db'}")
    account = add_account("acct0001")
    with app.test_client() as client:
        store(client, account, api_record("API"), api_record("JOB"))
        store(client, account, api_record("OLD", age=OLD), api_record("VOICE", product="voice"))

        assert redact(client, account, "API").status_code == 204
        jobs = JobsClient(client, account, app.services.queue)
        job = jobs.ready(["JOB"])
        jobs.action(job["id"], "run", expect=200, processing_mode="sync")
        set_policy(client, account, sms={"auto_redact": "after", "after_days": 30})
        assert app.services.queue.retention().redacted == 1
        set_policy(client, account, voice={"auto_redact": "immediate"})
        store(client, account, api_record("ARRIVED", product="voice"))

        sources = {
            "API": ("api", None),
            "JOB": ("job", job["id"]),
            "OLD": ("retention", None),
        }
        for id, (source, job_id) in sources.items():
            shown = read(client, account, id)
            assert (shown["from"], shown["to"], shown["text"]) == ("REDACTED",) * 3
            assert shown["redaction"] == {
                "redacted_at": clock().isoformat(),
                "source": source,
                "job": job_id,
            }
        arrived = read(client, account, "ARRIVED", product="voice")
        assert arrived["redaction"]["source"] == "policy"
        assert read(client, account, "VOICE", product="voice")["redaction"] is None


# ------------------------------------------------------------------------------ policies


def test_policies_default_off_change_per_product_and_are_audited(client, account):
    shown = client.get(POLICIES, headers=account)
    body = matches(shown, "/policies")
    assert {p: v["auto_redact"] for p, v in body["products"].items()} == dict.fromkeys(
        body["products"], "off"
    )
    assert len(body["products"]) == 6
    changed = set_policy(
        client,
        account,
        sms={"auto_redact": "after", "after_days": 30},
        voice={"auto_redact": "immediate"},
    )
    assert changed["products"]["sms"] == {
        "auto_redact": "after",
        "after_days": 30,
        "backlog": 0,
        "held": 0,
    }
    assert changed["products"]["voice"]["auto_redact"] == "immediate"
    assert changed["products"]["verify"]["auto_redact"] == "off"
    set_policy(client, account, sms={"auto_redact": "after", "after_days": 30})  # no change
    set_policy(client, account, sms={"auto_redact": "off"})
    with database.connection_context():
        events = list(AuditEvent.select().order_by(AuditEvent.id))
    assert [(e.action, e.target, e.before, e.after, e.actor) for e in events] == [
        (
            "policy.changed",
            "sms",
            {"auto_redact": "off", "after_days": None},
            {"auto_redact": "after", "after_days": 30},
            "api:acct0001",
        ),
        (
            "policy.changed",
            "voice",
            {"auto_redact": "off", "after_days": None},
            {"auto_redact": "immediate", "after_days": None},
            "api:acct0001",
        ),
        (
            "policy.changed",
            "sms",
            {"auto_redact": "after", "after_days": 30},
            {"auto_redact": "off", "after_days": None},
            "api:acct0001",
        ),
    ]
    assert all(e.trace_id for e in events)


@pytest.mark.parametrize(
    "products,status",
    [
        ({"sms": {"auto_redact": "after"}}, 422),
        ({"sms": {"auto_redact": "immediate", "after_days": 3}}, 422),
        ({"sms": {"auto_redact": "after", "after_days": 0}}, 422),
        ({"sms": {"auto_redact": "sometimes"}}, 422),
        ({"fax": {"auto_redact": "off"}}, 422),
        ({"voice": {"auto_redact": "immediate"}, "sms": {"auto_redact": "after"}}, 422),
    ],
)
def test_a_bad_policy_change_changes_nothing(client, account, products, status):
    response = client.post(POLICIES, json={"products": products}, headers=account)
    matches(response, "/policies", "post")
    assert response.status_code == status, response.text
    assert count(AuditEvent.select()) == 0


def test_a_policy_for_an_unprovisioned_product_is_refused(make_app, sqlite_url):
    app = make_app(sqlite_url)
    headers = add_account("acctsms1", products=("sms",))
    with app.test_client() as client:
        response = client.post(
            POLICIES, json={"products": {"voice": {"auto_redact": "immediate"}}}, headers=headers
        )
        matches(response, "/policies", "post")
        assert response.status_code == 403
        assert list(client.get(POLICIES, headers=headers).json()["products"]) == ["sms"]


def test_immediate_stores_records_redacted_and_their_bytes_never_reach_the_files(
    make_app, tmp_path
):
    db_path = tmp_path / "redact.db"
    app = make_app(f"sqlite:///{db_path}")
    account = add_account("acct0001")
    marker = "MARKER-5d1e0b"
    with app.test_client() as client:
        set_policy(client, account, sms={"auto_redact": "immediate"})
        counts = store(
            client,
            account,
            api_record("R1", **{"from": f"{marker}-from", "to": f"{marker}-to"}, note=marker),
            api_record("R2", text=f"{marker}-long " * 2000),
            api_record("V1", product="voice", text="KEEP-ME-93c1"),
        )
        assert counts == {
            "received": 3,
            "stored": 3,
            "unchanged": 0,
            "redacted_on_arrival": 2,
            "refused": [],
        }
        shown = read(client, account, "R1")
        assert (shown["from"], shown["text"], shown["note"]) == ("REDACTED",) * 3
        assert shown["redaction"]["source"] == "policy"
        assert files_containing(db_path, marker.encode()) == []
        assert read(client, account, "V1", product="voice")["text"] == "KEEP-ME-93c1"
    assert files_containing(db_path, b"KEEP-ME-93c1") == []  # sealed
    with database.connection_context():
        assert row("R1").sender_key is None
        audit = RedactionAudit.select().where(RedactionAudit.source == "policy")
        assert sorted(a.transaction_id for a in audit) == ["R1", "R2"]


def test_retention_redacts_what_is_past_its_days_in_batches(
    make_app, database_url, clock, tmp_path
):
    app = make_app(database_url, job_batch_size=7, queue_url=f"sqlite:///{tmp_path / 'q.db'}")
    account = add_account("acct0001")
    other = add_account("acct0002")
    with app.test_client() as client:
        store(client, account, *(api_record(f"OLD{n}", age=OLD) for n in range(20)))
        store(client, account, api_record("NEW", age=datetime.timedelta(days=29)))
        store(client, account, api_record("VOICE", product="voice", age=OLD))
        store(client, other, api_record("THEIRS", age=OLD))
        set_policy(client, account, sms={"auto_redact": "after", "after_days": 30})
        assert client.get(POLICIES, headers=account).json()["products"]["sms"]["backlog"] == 20

        report = app.services.queue.retention()
        assert (report.redacted, report.held, report.finished) == (20, 0, True)
        assert row("NEW").redacted_at is None
        assert row("VOICE").redacted_at is None and row("THEIRS").redacted_at is None
        with database.connection_context():
            audit = list(RedactionAudit.select().where(RedactionAudit.source == "retention"))
        assert len(audit) == 20 and len({a.trace_id for a in audit}) == 1
        assert client.get(POLICIES, headers=account).json()["products"]["sms"]["backlog"] == 0

        clock.advance(days=2)  # NEW is now past 30 days
        assert app.services.queue.retention().redacted == 1
        assert row("NEW").body == "REDACTED"


def test_retention_never_redacts_within_the_premature_window(make_app, database_url):
    app = make_app(database_url, min_age_seconds=3 * 86400)
    account = add_account("acct0001")
    with app.test_client() as client:
        store(
            client,
            account,
            api_record("TWO", age=datetime.timedelta(days=2)),
            api_record("FOUR", age=datetime.timedelta(days=4)),
        )
        set_policy(client, account, sms={"auto_redact": "after", "after_days": 1})
        assert client.get(POLICIES, headers=account).json()["products"]["sms"]["backlog"] == 1
        assert app.services.queue.retention().redacted == 1
    assert (row("TWO").redacted_at, row("FOUR").body) == (None, "REDACTED")


# --------------------------------------------------------------------------------- holds


def test_holds_are_created_listed_retrieved_and_released_with_an_audit(client, account, clock):
    store(client, account, api_record("R1"), api_record("R2", to="447700900777"))
    created = hold(
        client,
        account,
        transactions=[{"id": "R2", "product": "sms"}],
        subjects=["+44 7700 900002", "447700900002"],
        reason="Smith v Acme",
    )
    assert created["id"].startswith("hold_") and created["status"] == "active"
    assert created["counts"] == {"transactions": 1, "subjects": 1, "records": 2}
    assert created["released"] is None and created["reason"] == "Smith v Acme"

    second = hold(client, account, subjects=["447700900999"])
    listed = client.get(HOLDS, headers=account)
    assert [h["id"] for h in matches(listed, "/holds")["data"]] == [second["id"], created["id"]]
    page = client.get(HOLDS, params={"limit": 1}, headers=account).json()
    assert ([h["id"] for h in page["data"]], page["has_more"]) == ([second["id"]], True)
    after = client.get(
        HOLDS, params={"limit": 1, "starting_after": second["id"]}, headers=account
    ).json()
    assert [h["id"] for h in after["data"]] == [created["id"]]
    before = client.get(HOLDS, params={"ending_before": created["id"]}, headers=account).json()
    assert [h["id"] for h in before["data"]] == [second["id"]]

    shown = client.get(f"{HOLDS}/{created['id']}", headers=account)
    assert matches(shown, "/holds/{hold}") == created

    clock.advance(minutes=5)
    released = client.post(f"{HOLDS}/{created['id']}/release", headers=account)
    body = matches(released, "/holds/{hold}/release", "post")
    assert (body["status"], body["released"]) == ("released", int(clock().timestamp()))
    assert body["counts"]["records"] == 0
    again = client.post(f"{HOLDS}/{created['id']}/release", headers=account)
    assert again.json() == body  # releasing a released hold changes nothing
    active = client.get(HOLDS, params={"status": "active"}, headers=account).json()
    assert [h["id"] for h in active["data"]] == [second["id"]]
    with database.connection_context():
        events = [
            (e.action, e.target)
            for e in AuditEvent.select().where(AuditEvent.action.startswith("hold."))
        ]
    assert events == [
        ("hold.created", created["id"]),
        ("hold.created", second["id"]),
        ("hold.released", created["id"]),
    ]


@pytest.mark.parametrize(
    "objects,status",
    [
        ({}, 422),
        ({"subjects": []}, 422),
        ({"subjects": ["not a number"]}, 422),
        ({"subjects": ["123"]}, 422),
        ({"transactions": [{"id": "NOPE", "product": "sms"}]}, 404),
        ({"transactions": [{"id": "R1", "product": "voice"}]}, 404),
    ],
)
def test_a_bad_hold_creates_nothing(client, account, objects, status):
    store(client, account, api_record("R1"))
    response = client.post(HOLDS, json={"reason": "x", **objects}, headers=account)
    matches(response, "/holds", "post")
    assert response.status_code == status, response.text
    assert client.get(HOLDS, headers=account).json()["data"] == []


def test_a_missing_hold_or_cursor_is_a_404(client, account):
    missing = "hold_000000000000000000000000"
    for response in (
        client.get(f"{HOLDS}/{missing}", headers=account),
        client.post(f"{HOLDS}/{missing}/release", headers=account),
    ):
        assert response.status_code == 404
        assert response.json()["title"] == "No Such Hold"
    cursor = client.get(HOLDS, params={"starting_after": missing}, headers=account)
    assert matches(cursor, "/holds")["title"] == "No Such Cursor"


def test_a_hold_stops_the_redact_api_until_it_is_released(client, account):
    store(client, account, api_record("NAMED", to="447700900777"), api_record("ABOUT"))
    by_id = hold(client, account, transactions=[{"id": "NAMED", "product": "sms"}])
    by_number = hold(client, account, subjects=[NUMBER])
    store(client, account, api_record("LATER"))  # arrives after the hold, about its number

    for id, holds in (
        ("NAMED", [by_id["id"]]),
        ("ABOUT", [by_number["id"]]),
        ("LATER", [by_number["id"]]),
    ):
        response = redact(client, account, id)
        body = assert_matches_contract(response)
        assert (response.status_code, body["title"]) == (403, "Legal Hold")
        assert f"'{id}'" in body["detail"]
        shown = read(client, account, id)
        assert (shown["held"], shown["holds"], shown["text"]) == (True, holds, "hello there")

    client.post(f"{HOLDS}/{by_id['id']}/release", headers=account)
    client.post(f"{HOLDS}/{by_number['id']}/release", headers=account)
    for id in ("NAMED", "ABOUT", "LATER"):
        assert redact(client, account, id).status_code == 204


@pytest.mark.parametrize("behavior", ["error", "fix"])
def test_job_validation_reports_held_records_and_numbers(
    make_app, database_url, tmp_path, behavior
):
    app = make_app(database_url, queue_url=f"sqlite:///{tmp_path / 'q.db'}")
    account = add_account("acct0001")
    with app.test_client() as client:
        store(
            client,
            account,
            api_record("NAMED", to="447700900777"),
            api_record("FREE", to="447700900555"),
        )
        store(client, account, api_record("ABOUT", to="447700900888"))
        held = hold(client, account, transactions=[{"id": "NAMED", "product": "sms"}])
        hold(client, account, subjects=["447700900888"])
        jobs = JobsClient(client, account, app.services.queue)
        job = jobs.create(
            ["NAMED", "FREE"], ["447700900888", "447700900555"], validation_behavior=behavior
        )
        jobs.drain()
        assert jobs.get(job["id"])["status"] == "failed"
        errors = jobs.errors(job["id"])["data"]
        assert [(e["code"], e["object"]) for e in errors] == [
            ("held", {"transaction": {"id": "NAMED", "product": "sms", "type": "outbound"}}),
            ("held", {"subject": "447700900888"}),
        ]
        # Released, the job validates again and runs.
        client.post(f"{HOLDS}/{held['id']}/release", headers=account)
        jobs.action(job["id"], "validate", expect=200)
        jobs.drain()
        assert [e["code"] for e in jobs.errors(job["id"])["data"]] == ["held"]


def test_a_hold_placed_after_validation_makes_the_run_skip_the_record(
    make_app, sqlite_url, tmp_path
):
    app = make_app(sqlite_url, queue_url=f"sqlite:///{tmp_path / 'q.db'}")
    account = add_account("acct0001")
    with app.test_client() as client:
        store(client, account, api_record("A"), api_record("B", to="447700900777"))
        jobs = JobsClient(client, account, app.services.queue)
        job = jobs.ready(["A", "B"])
        hold(client, account, transactions=[{"id": "B", "product": "sms"}])
        ran = jobs.action(job["id"], "run", expect=200, processing_mode="sync").json()
        assert (ran["status"], ran["counts"]["redacted"], ran["counts"]["skipped"]) == (
            "succeeded",
            1,
            1,
        )
    assert (row("A").body, row("B").body) == ("REDACTED", "hello there")


def test_retention_skips_and_counts_held_records_until_released(make_app, database_url):
    app = make_app(database_url)
    account = add_account("acct0001")
    with app.test_client() as client:
        store(client, account, api_record("FREE", age=OLD, to="447700900555"))
        store(
            client,
            account,
            api_record("HELD", age=OLD),
            api_record("NAMED", age=OLD, to="447700900666"),
        )
        by_number = hold(client, account, subjects=[NUMBER])
        hold(client, account, transactions=[{"id": "NAMED", "product": "sms"}])
        set_policy(client, account, sms={"auto_redact": "after", "after_days": 30})
        report = app.services.queue.retention()
        assert (report.redacted, report.held) == (1, 2)
        sms = client.get(POLICIES, headers=account).json()["products"]["sms"]
        assert (sms["backlog"], sms["held"]) == (2, 2)
        assert app.services.queue.retention().held == 2  # and again: still held

        client.post(f"{HOLDS}/{by_number['id']}/release", headers=account)
        assert (app.services.queue.retention().redacted, row("HELD").body) == (1, "REDACTED")
        assert row("NAMED").redacted_at is None


def test_immediate_does_not_redact_a_held_record_on_arrival(client, account):
    set_policy(client, account, sms={"auto_redact": "immediate"})
    hold(client, account, subjects=[NUMBER])
    counts = store(client, account, api_record("HELD"), api_record("FREE", to="447700900555"))
    assert (counts["stored"], counts["redacted_on_arrival"]) == (2, 1)
    assert (row("HELD").body, row("FREE").body) == ("hello there", "REDACTED")
    assert read(client, account, "HELD")["held"] is True


def test_records_loaded_by_the_command_are_held_and_redacted_on_arrival_too(client, account):
    set_policy(client, account, voice={"auto_redact": "immediate"})
    add_records(record("LOADED", product="voice"))
    assert row("LOADED").sender == "REDACTED"
    assert read(client, account, "LOADED", product="voice")["redaction"]["source"] == "policy"


def test_the_jobs_contract_still_answers_beside_the_records_one(client, account):
    # Three contracts share /v1/redact: each one's paths answer from it.
    assert client.get(JOBS, headers=account).status_code == 200
    assert client.get(HOLDS, headers=account).status_code == 200
    assert redact(client, account, "NOPE").status_code == 404


def test_a_hold_body_the_contract_allows_is_read_past_the_redact_apis_limit(client, account):
    # 3,000 named records: ~130 KB, over the 64 KB of the Redact API, under the jobs' limit.
    named = [{"id": f"0A{n:015d}", "product": "sms"} for n in range(3000)]
    response = client.post(HOLDS, json={"reason": "big", "transactions": named}, headers=account)
    assert response.status_code == 404, response.text  # read, and the first is unknown
    assert "0A000000000000000" in response.json()["detail"]


def test_a_subject_job_leaves_held_records_and_finishes(make_app, database_url, tmp_path):
    app = make_app(database_url, queue_url=f"sqlite:///{tmp_path / 'q.db'}")
    account = add_account("acct0001")
    with app.test_client() as client:
        store(client, account, api_record("S1"), api_record("S2"), api_record("S3"))
        jobs = JobsClient(client, account, app.services.queue)
        job = jobs.ready(subjects=[NUMBER])
        hold(client, account, transactions=[{"id": "S2", "product": "sms"}])
        ran = jobs.action(job["id"], "run", expect=200, processing_mode="sync").json()
        assert (ran["status"], ran["counts"]["redacted"]) == ("succeeded", 2)
    assert [row(i).body for i in ("S1", "S2", "S3")] == ["REDACTED", "hello there", "REDACTED"]


def pass_with_budget(batches: int, between=lambda n: None):
    """A retention pass that stops after `batches` batches (its clock for the budget
    moves one second a batch); `between(n)` runs before the n-th batch."""
    from models.erasure.retention import run_retention

    calls = iter(range(10_000))

    def monotonic():
        n = next(calls)
        between(n)
        return float(n)

    with database.connection_context():
        return run_retention(
            clock=lambda: datetime.datetime.now(datetime.UTC),
            min_age_seconds=3600,
            batch_size=2,
            owner="test",
            budget_seconds=batches,  # the first call starts the clock
            monotonic=monotonic,
        )


def test_held_records_do_not_stand_in_the_way_and_policies_take_turns(make_app, database_url):
    app = make_app(database_url)
    first, second = add_account("acct0001"), add_account("acct0002")
    with app.test_client() as client:
        # acct0001's four oldest records are held; both accounts have a backlog.
        store(
            client,
            first,
            *(api_record(f"H{n}", age=OLD + datetime.timedelta(days=1)) for n in range(4)),
        )
        store(client, first, *(api_record(f"F{n}", age=OLD, to="447700900555") for n in range(4)))
        store(client, second, *(api_record(f"T{n}", age=OLD) for n in range(4)))
        hold(client, first, subjects=[NUMBER])
        for headers in (first, second):
            set_policy(client, headers, sms={"auto_redact": "after", "after_days": 30})
        report = pass_with_budget(2)  # two batches of two
        assert (report.redacted, report.held, report.finished) == (4, 4, False)
        with database.connection_context():
            done = Transaction.select().where(Transaction.redacted_at.is_null(False))
            assert sorted(t.api_key for t in done) == ["acct0001"] * 2 + ["acct0002"] * 2


def test_a_pass_stops_a_policy_changed_meanwhile(make_app, database_url):
    app = make_app(database_url)
    account = add_account("acct0001")
    with app.test_client() as client:
        store(client, account, *(api_record(f"R{n}", age=OLD) for n in range(6)))
        set_policy(client, account, sms={"auto_redact": "after", "after_days": 30})

        def turn_it_off(n):
            if n == 2:  # before the second batch
                set_policy(client, account, sms={"auto_redact": "off"})

        report = pass_with_budget(100, turn_it_off)
        assert (report.redacted, report.finished) == (2, True)
    with database.connection_context():
        assert Transaction.select().where(Transaction.redacted_at.is_null()).count() == 4


def test_a_record_held_on_arrival_under_immediate_is_redacted_once_released(client, account):
    set_policy(client, account, sms={"auto_redact": "immediate"})
    held = hold(client, account, subjects=[NUMBER])
    store(client, account, api_record("KEPT"))
    assert row("KEPT").body == "hello there"
    shown = client.get(POLICIES, headers=account).json()["products"]["sms"]
    assert (shown["backlog"], shown["held"]) == (1, 1)
    client.post(f"{HOLDS}/{held['id']}/release", headers=account)
    assert pass_with_budget(100).redacted == 1
    assert row("KEPT").body == "REDACTED"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (HOLDS, {"reason": "case\u00001", "subjects": ["447700900001"]}, "reason"),
        (
            HOLDS,
            {"reason": "x", "transactions": [{"id": "R\u0000", "product": "sms"}]},
            "transactions[0].id",
        ),
        (POLICIES, {"products": {"sms\u0000": {"auto_redact": "off"}}}, "products.sms\u0000"),
        ("/v1/redact/suppressions", {"number": "447700900001\u0000"}, "number"),
    ],
)
def test_a_nul_character_in_a_policy_hold_or_suppression_is_a_422(
    client, account, path, body, field
):
    response = client.post(path, json=body, headers=account)
    problem = matches(response, path.removeprefix("/v1/redact"), "post")
    assert response.status_code == 422
    assert problem["errors"] == [{"field": field, "reason": "must not contain a NUL character"}]
    assert client.get(HOLDS, headers=account).json()["data"] == []
    policies = client.get(POLICIES, headers=account).json()["products"]
    assert {p["auto_redact"] for p in policies.values()} == {"off"}
    assert client.get("/v1/redact/suppressions", headers=account).json()["data"] == []


@pytest.mark.parametrize("where", ["id", "text", "detail"])
def test_a_nul_character_is_a_422_and_stores_nothing(client, account, where):
    bad = api_record("R1")
    if where == "detail":  # a detail may hold NUL; the record is refused for another field
        bad["created_at"] = "never"
    if where == "detail":
        bad["note"] = "a\u0000b"
    else:
        bad[where] = "a\u0000b"
    response = client.post(RECORDS, json={"records": [bad]}, headers=account)
    body = matches(response, "/records", "post")
    assert response.status_code == 422
    if where == "detail":  # stored as JSON, which escapes it
        assert body["count"] == 1 and body["errors"][0]["field"] == "records[0].created_at"
    else:
        assert body["errors"] == [
            {"field": f"records[0].{where}", "reason": "a NUL character is not allowed"}
        ]
    # No stored id holds NUL: the Redact API, a read-back and a hold say so.
    assert redact(client, account, "a\u0000b").status_code == 404
    assert read(client, account, "a%00b", expect=404)["detail"]
    assert client.get(f"{HOLDS}/hold_%00", headers=account).status_code == 404
    assert count(Transaction.select()) == 0
