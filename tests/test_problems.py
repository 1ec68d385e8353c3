"""The problem catalogue as documented, and schema failures as a person reads them: the
table of docs/api.md and app/http/problems.py's catalogue name the same problems, and a
request that breaks a schema (one per API, and a query parameter) gets the documented
title, a one-line detail and an `errors` list of fields and plain reasons."""

from __future__ import annotations

import pathlib
import re

import pytest

from app.http.problems import CATALOGUE
from tests.support import assert_matches_contract

API_DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "api.md"
ROW = re.compile(r"^\| `(?P<type>[^`]+)` \| (?P<status>\d{3}) \| (?P<title>[^|]+?) \| .+ \|$")
FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*(\[\d+\]|\.[A-Za-z_][A-Za-z0-9_-]*)*$")
# What a regular expression or a Python repr would leave in a reason.
NOT_WORDS = ("[", "]", "{", "}", "^", "$", "\\", "'", '"', "(?", "data.", "None", "True")

PRODUCTS = "sms, voice, number-insight, verify, verify-sdk, messages"
EVENTS = "job.succeeded, job.failed, job.canceled, hold.created, hold.released, retention.completed"


def documented() -> dict[tuple[str, int], str]:
    """The problem types table of docs/api.md: title by (type, status)."""
    text = API_DOC.read_text()
    section = text.split("## Problem types", 1)[1].split("\n## ", 1)[0]
    rows = [ROW.match(line) for line in section.splitlines() if line.startswith("| `")]
    assert all(rows), "a row of the table is not `| `type` | status | title | when |`"
    table = {(m["type"], int(m["status"])): m["title"] for m in rows if m}
    assert len(table) == len(rows), "a problem is listed twice"
    return table


def test_the_documented_problem_types_are_the_catalogue():
    catalogue = {(kind.type, kind.status): kind.title for kind in CATALOGUE.values()}
    assert documented() == catalogue


SAMPLES = [
    pytest.param(
        "post",
        "/jobs",
        {"objects": {"transactions": [{"id": "X1", "product": "fax"}]}, "description": "d" * 501},
        "jobs.yml",
        422,
        "urn:redact:problem:invalid-request",
        [
            {"field": "description", "reason": "must be at most 500 characters"},
            {"field": "objects.transactions[0].product", "reason": f"must be one of: {PRODUCTS}"},
        ],
        id="jobs",
    ),
    pytest.param(
        "post",
        "/records",
        {"records": [], "source": "crm"},
        "records.yml",
        422,
        "urn:redact:problem:invalid-request",
        [
            {"field": "records", "reason": "must not be empty"},
            {"field": "source", "reason": "is not allowed here"},
        ],
        id="records",
    ),
    pytest.param(
        "post",
        "/records",
        {"records": [{"id": "R1", "product": "fax", "created_at": "2026-11-01T00:00:00Z"}, 7]},
        "records.yml",
        422,
        "urn:redact:problem:invalid-records",
        [
            {"field": "records[0].product", "reason": f"must be one of: {PRODUCTS}"},
            {"field": "records[1]", "reason": "must be a JSON object"},
        ],
        id="records-items",
    ),
    pytest.param(
        "post",
        "/policies",
        {"products": {"fax": {"auto_redact": "off"}, "sms": {"auto_redact": "later"}}},
        "records.yml",
        422,
        "urn:redact:problem:invalid-request",
        [
            {"field": "products.fax", "reason": "is not allowed here"},
            {
                "field": "products.sms.auto_redact",
                "reason": "must be one of: off, immediate, after",
            },
        ],
        id="policies",
    ),
    pytest.param(
        "post",
        "/webhooks",
        {"url": "ftp://example.com/hooks", "events": ["job.done"], "secret": "x"},
        "webhooks.yml",
        422,
        "urn:redact:problem:invalid-webhook",
        [
            {"field": "events[0]", "reason": f"must be one of: {EVENTS}"},
            {"field": "secret", "reason": "is not allowed here"},
            {
                "field": "url",
                "reason": "must be an http or https URL with a host, where events are POSTed",
            },
        ],
        id="webhooks",
    ),
    pytest.param(
        "get",
        "/jobs?limit=500&starting_after=rj_123&colour=blue",
        None,
        "jobs.yml",
        400,
        "urn:redact:problem:invalid-parameters",
        [
            {"field": "colour", "reason": "is not a parameter of this operation"},
            {"field": "limit", "reason": "must be at most 100"},
            {"field": "starting_after", "reason": "must be an id starting with rj_"},
        ],
        id="query",
    ),
]


@pytest.mark.parametrize("method, path, body, contract, status, type_, expected", SAMPLES)
def test_a_schema_failure_says_what_is_wrong_in_words(
    client, account, method, path, body, contract, status, type_, expected
):
    sent = {"headers": account} if body is None else {"headers": account, "json": body}
    response = getattr(client, method)(f"/v1/redact{path}", **sent)
    assert response.status_code == status, response.text
    problem = assert_matches_contract(response, path.split("?")[0], method, contract)
    assert problem["type"] == type_
    assert problem["title"] == documented()[(type_, status)]
    detail = problem["detail"]
    assert detail.strip() and "\n" not in detail and "['" not in detail and "{'" not in detail
    errors = problem["errors"]
    assert sorted(errors, key=lambda e: e["field"]) == expected
    for error in errors:
        assert set(error) == {"field", "reason"}
        assert FIELD.match(error["field"]), error
        assert not [c for c in NOT_WORDS if c in error["reason"]], error


def test_the_detail_names_the_first_problem_and_counts_the_rest(client, account):
    response = client.get("/v1/redact/jobs?limit=0", headers=account)
    problem = response.json()
    assert response.status_code == 400
    assert problem["detail"] == "The request's parameters: limit must be at least 1"
    assert problem["errors"] == [{"field": "limit", "reason": "must be at least 1"}]
    many = client.post(
        "/v1/redact/webhooks", json={"url": "", "events": [], "x": 1}, headers=account
    ).json()
    assert many["detail"].endswith("(and 2 more problems, see errors)"), many


def test_an_integer_parameter_beyond_its_format_is_refused(client, account):
    # Schemathesis's negative fuzzing sends int64's maximum + 1: jsonschema has no int64.
    response = client.get("/v1/redact/log/entries?start=0&end=9223372036854775808", headers=account)
    assert response.status_code == 400, response.text
    assert response.json()["errors"] == [
        {"field": "end", "reason": "must be at most 9223372036854775807"}
    ]


def test_a_body_that_fits_no_form_is_told_the_form(client, account):
    response = client.post(
        "/v1/redact/policies",
        json={"products": {"sms": {"auto_redact": "off", "after_days": 30}}},
        headers=account,
    )
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {
            "field": "products.sms",
            "reason": "must be a policy, `after` with `after_days`, or `off` or `immediate` "
            "without it",
        }
    ]
    numbers = client.post(
        "/v1/redact/jobs", json={"objects": {"subjects": ["call me"]}}, headers=account
    ).json()
    assert numbers["errors"] == [
        {
            "field": "objects.subjects[0]",
            "reason": "must be a phone number, 7 to 15 digits (optionally after + and with "
            "separators)",
        }
    ]


def test_a_body_that_is_not_json_is_still_invalid_json(client, account):
    response = client.post(
        "/v1/redact/jobs",
        content=b'{"objects": ',
        headers={**account, "Content-Type": "application/json"},
    )
    problem = response.json()
    assert response.status_code == 422
    assert (problem["title"], "errors" in problem) == ("Invalid JSON", False)
    text = client.post(
        "/v1/redact/jobs", content=b"objects", headers={**account, "Content-Type": "text/plain"}
    ).json()
    assert (text["title"], text["detail"]) == (
        "Invalid JSON",
        "Content-type text/plain is not accepted here: send application/json",
    )
    not_an_object = client.post("/v1/redact/webhooks", json=["x"], headers=account).json()
    assert not_an_object["title"] == "Invalid Webhook"
    assert not_an_object["errors"] == [{"field": "body", "reason": "must be a JSON object"}]


def test_the_redact_api_keeps_the_upstream_bodies(client, account):
    response = client.post(
        "/v1/redact/transaction", json={"id": "X", "product": "sms", "type": "up"}, headers=account
    )
    problem = response.json()
    assert response.status_code == 422
    assert set(problem) == {"type", "title", "detail", "instance"}
    assert problem["title"] == "Invalid JSON"
