"""POST /v1/redact/transaction: one test per response the contract names."""

from __future__ import annotations

import datetime

import pytest

from models import RedactionAudit, Transaction, database
from tests.support import (
    START,
    add_account,
    add_records,
    assert_matches_contract,
    basic,
    opened,
    record,
    scrubs_committed,
)

URL = "/v1/redact/transaction"
UPSTREAM = "https://developer.nexmo.com/api-errors"


def stored(transaction_id: str) -> Transaction:
    """The stored record, its sealed fields opened, once the scrubs answered have
    committed."""
    scrubs_committed()
    with database.connection_context():
        return opened(Transaction.get(Transaction.id == transaction_id))


def audit_rows() -> list[RedactionAudit]:
    scrubs_committed()
    with database.connection_context():
        return list(RedactionAudit.select().order_by(RedactionAudit.id))


def test_204_scrubs_personal_fields_and_keeps_the_rest(client, account):
    add_records(
        record(
            "0A0000000123ABCD1", status="delivered", price="0.0333", carrier_note="personal remark"
        )
    )
    response = client.post(
        URL, json={"id": "0A0000000123ABCD1", "product": "sms", "type": "outbound"}, headers=account
    )
    assert response.status_code == 204
    assert_matches_contract(response)
    row = stored("0A0000000123ABCD1")
    assert (row.sender, row.recipient, row.body) == ("REDACTED",) * 3
    # declared non-personal details stay; an undeclared field is treated as personal
    assert row.details == {"status": "delivered", "price": "0.0333", "carrier_note": "REDACTED"}
    assert row.redacted_at == START
    assert (row.product, row.direction, row.api_key) == ("sms", "outbound", "acct0001")
    [entry] = audit_rows()
    assert (entry.api_key, entry.transaction_id, entry.product) == (
        "acct0001",
        "0A0000000123ABCD1",
        "sms",
    )
    assert len(entry.trace_id) == 32


def test_204_again_when_already_redacted_without_a_second_audit_entry(client, account):
    add_records(record("0A0000000123ABCD1"))
    body = {"id": "0A0000000123ABCD1", "product": "sms"}
    assert client.post(URL, json=body, headers=account).status_code == 204
    again = client.post(URL, json=body, headers=account)
    assert again.status_code == 204
    assert again.content == b""
    assert len(audit_rows()) == 1


def test_type_is_optional_and_defaults_to_outbound(client, account):
    """The upstream `required: [type]` is a conversion slip; SDKs omit it."""
    add_records(record("0A00000000000OUT1", type="outbound"))
    response = client.post(URL, json={"id": "0A00000000000OUT1", "product": "sms"}, headers=account)
    assert response.status_code == 204


def test_inbound_sms_needs_type_inbound(client, account):
    add_records(record("0A000000000000MO1", type="inbound"))
    wrong = client.post(URL, json={"id": "0A000000000000MO1", "product": "sms"}, headers=account)
    assert wrong.status_code == 404
    assert assert_matches_contract(wrong)["detail"] == (
        "ID '0A000000000000MO1' could not be found (type=MT)"
    )
    right = client.post(
        URL, json={"id": "0A000000000000MO1", "product": "sms", "type": "inbound"}, headers=account
    )
    assert right.status_code == 204


@pytest.mark.parametrize(
    "product,extra",
    [
        ("voice", {}),
        ("number-insight", {"owner_name": "Jane Doe", "owner_address": "1 Road"}),
        ("verify", {}),
        ("verify-sdk", {}),
        ("messages", {"content": {"type": "image", "url": "https://x/y.png"}}),
    ],
)
def test_204_for_every_product(client, account, product, extra):
    add_records(record("c0ffee00-0000-4000-8000-000000000001", product=product, **extra))
    response = client.post(
        URL,
        json={"id": "c0ffee00-0000-4000-8000-000000000001", "product": product},
        headers=account,
    )
    assert response.status_code == 204
    row = stored("c0ffee00-0000-4000-8000-000000000001")
    assert row.sender == row.recipient == "REDACTED"
    assert all(value == "REDACTED" for value in (row.details or {}).values())
    assert set(row.details or {}) == set(extra)  # each personal field kept its place


def test_voice_record_with_a_transcript_is_scrubbed_too(client, account):
    add_records(
        record(
            "c0ffee00-0000-4000-8000-000000000002",
            product="voice",
            text="spoken words",
            transcript="more spoken words",
        )
    )
    client.post(
        URL,
        json={"id": "c0ffee00-0000-4000-8000-000000000002", "product": "voice"},
        headers=account,
    )
    row = stored("c0ffee00-0000-4000-8000-000000000002")
    assert row.body == "REDACTED"
    assert row.details == {"transcript": "REDACTED"}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        basic("acct0001", "wrong secret"),
        basic("nobody00"),
        {"Authorization": "Bearer abc"},
        {"Authorization": "Basic !!!not-base64"},
    ],
)
def test_401_for_missing_or_wrong_credentials(client, account, headers):
    response = client.post(URL, json={"id": "x", "product": "sms"}, headers=headers)
    assert response.status_code == 401
    assert assert_matches_contract(response) == {
        "type": "UNAUTHORIZED",
        "error_title": "Unauthorized",
    }
    assert response.headers["WWW-Authenticate"].startswith("Basic ")


def test_403_premature_redaction_names_id_and_wait(client, account):
    add_records(record("0A0000000123ABCD1", age=datetime.timedelta(minutes=10)))
    response = client.post(URL, json={"id": "0A0000000123ABCD1", "product": "sms"}, headers=account)
    assert response.status_code == 403
    body = assert_matches_contract(response)
    assert body["type"] == f"{UPSTREAM}/redact#premature-redaction"
    assert body["title"] == "Premature Redaction"
    assert body["detail"] == "You must wait 60 minutes before redacting ID '0A0000000123ABCD1'"
    assert stored("0A0000000123ABCD1").sender == "447700900001"


@pytest.mark.parametrize("minutes,status", [(59, 403), (61, 204)])
def test_window_edge(client, account, clock, minutes, status):
    add_records(record("0A0000000123ABCD1", age=datetime.timedelta(minutes=0)))
    clock.advance(minutes=minutes)
    response = client.post(URL, json={"id": "0A0000000123ABCD1", "product": "sms"}, headers=account)
    assert response.status_code == status


def test_window_is_configurable(make_app, sqlite_url, clock):
    app = make_app(sqlite_url, min_age_seconds=90)
    headers = add_account("acct0002")
    add_records(record("0A0000000123ABCD1", api_key="acct0002", age=datetime.timedelta(0)))
    with app.test_client() as client:
        clock.advance(seconds=60)
        early = client.post(
            URL, json={"id": "0A0000000123ABCD1", "product": "sms"}, headers=headers
        )
        assert early.json()["detail"] == (
            "You must wait 90 seconds before redacting ID '0A0000000123ABCD1'"
        )
        clock.advance(seconds=31)
        assert (
            client.post(
                URL, json={"id": "0A0000000123ABCD1", "product": "sms"}, headers=headers
            ).status_code
            == 204
        )


def test_403_unprovisioned(client, app):
    headers = add_account("smsonly1", products=["sms"])
    response = client.post(
        URL,
        json={"id": "c0ffee00-0000-4000-8000-000000000001", "product": "voice"},
        headers=headers,
    )
    assert response.status_code == 403
    body = assert_matches_contract(response)
    assert body["type"] == f"{UPSTREAM}#unprovisioned"
    assert body["title"] == "Authorisation error"
    assert body["detail"] == "User=smsonly1 is not provisioned to redact product=voice"


@pytest.mark.parametrize(
    "body,detail",
    [
        (
            {"id": "0A00000000UNKNOWN", "product": "sms"},
            "ID '0A00000000UNKNOWN' could not be found (type=MT)",
        ),
        (
            {"id": "0A00000000UNKNOWN", "product": "sms", "type": "inbound"},
            "ID '0A00000000UNKNOWN' could not be found (type=MO)",
        ),
        # the SMS record exists, but not as a voice record
        (
            {"id": "0A0000000123ABCD1", "product": "voice"},
            "ID '0A0000000123ABCD1' could not be found (type=voice)",
        ),
    ],
)
def test_404_invalid_id(client, account, body, detail):
    add_records(record("0A0000000123ABCD1"))
    response = client.post(URL, json=body, headers=account)
    assert response.status_code == 404
    problem = assert_matches_contract(response)
    assert problem["type"] == f"{UPSTREAM}#invalid-id"
    assert problem["title"] == "Invalid ID"
    assert problem["detail"] == detail


def test_404_for_another_accounts_record_leaves_it_untouched(client, account):
    other = add_account("acct0002")
    add_records(record("0A0000000123ABCD1", api_key="acct0002"))
    response = client.post(URL, json={"id": "0A0000000123ABCD1", "product": "sms"}, headers=account)
    assert response.status_code == 404
    assert response.json()["detail"] == "ID '0A0000000123ABCD1' could not be found (type=MT)"
    assert stored("0A0000000123ABCD1").sender == "447700900001"
    # and the owner still can
    assert (
        client.post(
            URL, json={"id": "0A0000000123ABCD1", "product": "sms"}, headers=other
        ).status_code
        == 204
    )


@pytest.mark.parametrize(
    "content,content_type,fragment",
    [
        (b'{"id": "x", "product": ', "application/json", "not valid JSON"),
        (b"[1, 2]", "application/json", "must be a JSON object"),
        (b'"text"', "application/json", "must be a JSON object"),
        (b'{"product": "sms"}', "application/json", "'id' is a required property"),
        (b'{"id": "x"}', "application/json", "'product' is a required property"),
        (b'{"id": 5, "product": "sms"}', "application/json", "field 'id'"),
        (b'{"id": "x", "product": "sms", "type": "sideways"}', "application/json", "field 'type'"),
        (b"", "application/json", "required"),
        (b'{"id": "\xff"}', "application/json", "UTF-8"),
        (b"id=x&product=sms", "application/x-www-form-urlencoded", "Content-type"),
        (b'{"id": "x", "product": "sms"}', "text/plain", "Content-type"),
    ],
)
def test_422_invalid_json(client, account, content, content_type, fragment):
    response = client.post(URL, content=content, headers={**account, "Content-Type": content_type})
    assert response.status_code == 422
    body = assert_matches_contract(response)
    assert body["type"] == f"{UPSTREAM}#invalid-json"
    assert body["title"] == "Invalid JSON"
    assert fragment in body["detail"]


def test_422_invalid_product(client, account):
    response = client.post(URL, json={"id": "x", "product": "sms2"}, headers=account)
    assert response.status_code == 422
    body = assert_matches_contract(response)
    assert body["type"] == f"{UPSTREAM}/redact#invalid-product"
    assert body["title"] == "Invalid Product"
    assert body["detail"] == "No product corresponding to supplied string sms2!"


def test_429_rate_limit_hit(make_app, sqlite_url):
    app = make_app(sqlite_url, rate_limit="3/second")
    headers = add_account("acct0002")
    with app.test_client() as client:
        statuses = [
            client.post(URL, json={"id": "x", "product": "sms"}, headers=headers) for _ in range(4)
        ]
    assert [r.status_code for r in statuses] == [404, 404, 404, 429]
    assert statuses[0].headers["RateLimit-Policy"] == '"account";q=3;w=1'
    assert statuses[0].headers["RateLimit"].startswith('"account";r=2;t=')
    limited = statuses[-1]
    body = assert_matches_contract(limited)
    assert body["type"] == f"{UPSTREAM}/redact#rate-limit"
    assert body["title"] == "Rate Limit Hit"
    assert int(limited.headers["Retry-After"]) >= 1
    assert limited.headers["RateLimit"].startswith('"account";r=0;')


def test_every_problem_has_a_fresh_trace_id_in_the_log(client, account, caplog):
    caplog.set_level("INFO", logger="redact.access")
    first = client.post(URL, json={"id": "x", "product": "sms"}, headers=account).json()
    second = client.post(URL, json={"id": "x", "product": "sms"}, headers=account).json()
    assert first["instance"] != second["instance"]
    logged = {r.fields["trace_id"]: r.fields for r in caplog.records if hasattr(r, "fields")}
    assert logged[first["instance"]]["status"] == logged[second["instance"]]["status"] == 404


def test_204_is_bare(client, account):
    add_records(record("0A0000000123ABCD1"))
    response = client.post(URL, json={"id": "0A0000000123ABCD1", "product": "sms"}, headers=account)
    assert response.status_code == 204
    assert response.content == b""
    assert "content-type" not in response.headers
