"""The webhooks API (openapi/webhooks.yml) through the app: registering an endpoint (its
secret shown once), listing, retrieving and deleting, what each bad request gets, and
the events that changes of jobs, holds and retention write to the outbox."""

from __future__ import annotations

import base64
import datetime
import json

import pytest

from models import database
from models.webhooks.endpoints import MAX_ENDPOINTS
from models.webhooks.rows import WebhookAttempt, WebhookEvent
from tests.support import JobsClient, add_account, add_records, assert_matches_contract, record

WEBHOOKS = "/v1/redact/webhooks"
HOLDS = "/v1/redact/holds"
NOBODY = "whk_000000000000000000000000"
ALL_EVENTS = [
    "job.succeeded",
    "job.failed",
    "job.canceled",
    "hold.created",
    "hold.released",
    "retention.completed",
]


def matches(response, path: str, method: str = "get"):
    return assert_matches_contract(response, path, method, "webhooks.yml")


def register(client, headers, expect: int = 201, **body):
    body.setdefault("url", "https://example.com/hooks")
    body.setdefault("events", ALL_EVENTS)
    response = client.post(WEBHOOKS, json=body, headers=headers)
    assert response.status_code == expect, response.text
    return matches(response, "/webhooks", "post")


def outbox() -> list[WebhookEvent]:
    with database.connection_context():
        return list(WebhookEvent.select().order_by(WebhookEvent.seq))


def test_an_endpoint_is_registered_with_its_secret_shown_once(client, account, clock):
    created = register(client, account, description="billing system")
    assert created["id"].startswith("whk_") and len(created["id"]) == 28
    assert created["url"] == "https://example.com/hooks"
    assert created["events"] == ALL_EVENTS
    assert created["description"] == "billing system"
    assert created["created"] == int(clock().timestamp())
    assert created["deliveries"] == {"pending": 0, "delivered": 0, "failed": 0}
    assert created["secret"].startswith("whsec_")
    assert len(base64.b64decode(created["secret"][len("whsec_") :])) == 24

    shown = client.get(f"{WEBHOOKS}/{created['id']}", headers=account)
    body = matches(shown, "/webhooks/{webhook}")
    assert body == {k: v for k, v in created.items() if k != "secret"}
    listed = matches(client.get(WEBHOOKS, headers=account), "/webhooks")
    assert listed["data"] == [body] and created["secret"] not in json.dumps(listed)


def test_each_new_endpoint_has_its_own_secret_and_events_named_twice_count_once(client, account):
    first = register(client, account, events=["job.failed", "job.failed"])
    second = register(client, account, url="http://127.0.0.1:9/x", events=["hold.created"])
    assert first["events"] == ["job.failed"]
    assert first["secret"] != second["secret"]
    assert second["description"] is None


def test_endpoints_are_listed_newest_first_a_page_at_a_time(client, account):
    ids = [register(client, account, url=f"https://example.com/{n}")["id"] for n in range(5)]
    newest = list(reversed(ids))
    page = matches(client.get(WEBHOOKS, params={"limit": 2}, headers=account), "/webhooks")
    assert [e["id"] for e in page["data"]] == newest[:2] and page["has_more"] is True
    assert page["url"] == WEBHOOKS and page["object"] == "list"
    after = client.get(
        WEBHOOKS, params={"limit": 2, "starting_after": newest[1]}, headers=account
    ).json()
    assert [e["id"] for e in after["data"]] == newest[2:4] and after["has_more"] is True
    last = client.get(WEBHOOKS, params={"starting_after": newest[3]}, headers=account).json()
    assert [e["id"] for e in last["data"]] == newest[4:] and last["has_more"] is False
    back = client.get(
        WEBHOOKS, params={"limit": 2, "ending_before": newest[2]}, headers=account
    ).json()
    assert [e["id"] for e in back["data"]] == newest[:2] and back["has_more"] is False


def test_deleting_an_endpoint_drops_its_pending_events(client, account):
    created = register(client, account)
    kept = register(client, account, url="https://example.com/other")
    client.post(HOLDS, json={"subjects": ["447700900123"], "reason": "r"}, headers=account)
    assert len(outbox()) == 2
    response = client.delete(f"{WEBHOOKS}/{created['id']}", headers=account)
    assert response.status_code == 204 and response.content == b""
    matches(response, "/webhooks/{webhook}", "delete")
    assert [e.endpoint_id for e in outbox()] != [] and len(outbox()) == 1
    for method in ("get", "delete"):
        gone = client.request(method.upper(), f"{WEBHOOKS}/{created['id']}", headers=account)
        assert matches(gone, "/webhooks/{webhook}", method)["title"] == "No Such Webhook"
        assert gone.status_code == 404
    assert [e["id"] for e in client.get(WEBHOOKS, headers=account).json()["data"]] == [kept["id"]]


@pytest.mark.parametrize(
    "body",
    [
        {"url": "ftp://example.com/x"},
        {"url": "http://"},
        {"url": "example.com/hooks"},
        {"url": "https://user:pass@example.com/"},
        {"url": "https://example.com/a b"},
        {"url": "https://example.com:99999/"},
        {"url": "https://example.com/\u0000"},
        {"url": "https://example.com/caf\u00e9"},
        {"url": "https://[::1]/"},
        {"url": "https://example.com/" + "x" * 2000},
        {"events": []},
        {"events": ["job.started"]},
        {"events": "job.failed"},
        {"url": 7},
        {"surprise": True},
        {"description": "x\u0000y"},
        {"surprise\u0000": True},
    ],
)
def test_a_bad_endpoint_is_a_422_and_registers_nothing(client, account, body):
    body = {"url": "https://example.com/hooks", "events": ["job.failed"], **body}
    response = client.post(WEBHOOKS, json=body, headers=account)
    matches(response, "/webhooks", "post")
    assert response.status_code == 422, response.text
    assert client.get(WEBHOOKS, headers=account).json()["data"] == []


def test_an_account_has_at_most_ten_endpoints(client, account):
    for n in range(MAX_ENDPOINTS):
        register(client, account, url=f"https://example.com/{n}")
    refused = register(client, account, expect=409)
    assert refused["title"] == "Too Many Webhooks" and "at most" in refused["detail"]


def test_a_missing_endpoint_or_cursor_is_a_404(client, account):
    for method, path in (
        ("get", "/webhooks/{webhook}"),
        ("delete", "/webhooks/{webhook}"),
        ("get", "/webhooks/{webhook}/deliveries"),
    ):
        response = client.request(
            method.upper(), WEBHOOKS + path[len("/webhooks") :].replace("{webhook}", NOBODY),
            headers=account,
        )  # fmt: skip
        assert response.status_code == 404
        assert matches(response, path, method)["title"] == "No Such Webhook"
    cursor = client.get(WEBHOOKS, params={"starting_after": NOBODY}, headers=account)
    assert matches(cursor, "/webhooks")["title"] == "No Such Cursor"
    created = register(client, account)
    cursor = client.get(
        f"{WEBHOOKS}/{created['id']}/deliveries",
        params={"ending_before": "msg_000000000000000000000000"},
        headers=account,
    )
    assert matches(cursor, "/webhooks/{webhook}/deliveries")["title"] == "No Such Cursor"


def test_bad_parameters_are_400_problems(client, account):
    for params in ({"limit": 0}, {"limit": 101}, {"starting_after": "hold_1"}, {"x": "1"}):
        response = client.get(WEBHOOKS, params=params, headers=account)
        assert response.status_code == 400, (params, response.text)
        matches(response, "/webhooks")


@pytest.mark.parametrize(
    "method,path",
    [
        ("post", "/webhooks"),
        ("get", "/webhooks"),
        ("get", "/webhooks/{webhook}"),
        ("delete", "/webhooks/{webhook}"),
        ("get", "/webhooks/{webhook}/deliveries"),
    ],
)
def test_every_operation_needs_credentials(client, account, method, path):
    created = register(client, account)
    url = WEBHOOKS + path[len("/webhooks") :].replace("{webhook}", created["id"])
    for headers in ({}, {"Authorization": "Basic YWNjdDAwMDE6d3Jvbmc="}):
        response = client.request(method.upper(), url, json={}, headers=headers)
        assert response.status_code == 401
        matches(response, path, method)
    assert client.get(f"{WEBHOOKS}/{created['id']}", headers=account).status_code == 200


# ------------------------------------------------------------------- the events written


def payloads() -> list[dict]:
    return [json.loads(event.payload) for event in outbox()]


def test_holds_write_their_events_with_ids_and_counts_only(client, account, clock):
    register(client, account, events=["hold.created", "hold.released"])
    created = client.post(
        HOLDS, json={"subjects": ["447700900123"], "reason": "Smith v Jones"}, headers=account
    ).json()
    client.post(f"{HOLDS}/{created['id']}/release", headers=account)
    client.post(f"{HOLDS}/{created['id']}/release", headers=account)  # changes nothing
    sent = payloads()
    assert [p["type"] for p in sent] == ["hold.created", "hold.released"]
    assert sent[0]["data"] == {
        "hold": {
            "id": created["id"],
            "status": "active",
            "counts": {"transactions": 0, "subjects": 1},
        }
    }
    assert sent[1]["data"]["hold"]["status"] == "released"
    assert sent[0]["timestamp"] == clock().isoformat().replace("+00:00", "Z")
    text = json.dumps(sent)
    assert "447700900123" not in text and "Smith" not in text
    assert {e.key for e in outbox()} == {f"hold:{created['id']}"}


def test_an_event_goes_only_to_the_endpoints_that_asked_for_it(client, account):
    register(client, account, events=["job.succeeded"])
    other = add_account("acct0002")
    register(client, other, events=["hold.created"])
    client.post(HOLDS, json={"subjects": ["447700900123"], "reason": "r"}, headers=account)
    assert outbox() == []


def test_jobs_write_an_event_when_they_succeed_fail_or_are_canceled(
    make_app, database_url, tmp_path
):
    app = make_app(database_url, queue_url=f"sqlite:///{tmp_path / 'q.db'}")
    with app.test_client() as client:
        headers = add_account("acct0001")
        register(client, headers, events=["job.succeeded", "job.failed", "job.canceled"])
        add_records(record("R1"), record("R2"))
        jobs = JobsClient(client, headers, app.services.queue)
        good = jobs.ready(["R1"])
        jobs.action(good["id"], "run")
        jobs.drain()
        bad = jobs.create(["NOPE"])
        jobs.drain()
        jobs.action(bad["id"], "cancel")
        jobs.drain()
    events = [(p["type"], p["data"]["job"]["id"], p["data"]["job"]["status"]) for p in payloads()]
    assert events == [
        ("job.succeeded", good["id"], "succeeded"),
        ("job.failed", bad["id"], "failed"),
        ("job.canceled", bad["id"], "canceled"),
    ]
    succeeded = payloads()[0]["data"]["job"]
    assert succeeded["counts"]["redacted"] == 1 and succeeded["counts"]["records"] == 1
    assert "hello there" not in json.dumps(payloads())


def test_deliveries_list_an_endpoints_events_with_their_attempts(client, account):
    created = register(client, account, events=["hold.created"])
    for n in range(3):
        client.post(HOLDS, json={"subjects": [f"44770090012{n}"], "reason": "r"}, headers=account)
    events = outbox()
    with database.connection_context():
        WebhookAttempt.create(
            event=events[0].seq, at=events[0].created, status_code=503, duration_ms=4
        )
    url = f"{WEBHOOKS}/{created['id']}/deliveries"
    page = matches(
        client.get(url, params={"limit": 2}, headers=account), "/webhooks/{webhook}/deliveries"
    )
    assert [d["id"] for d in page["data"]] == [events[2].id, events[1].id] and page["has_more"]
    rest = client.get(url, params={"starting_after": events[1].id}, headers=account).json()
    assert rest["url"] == url
    (first,) = rest["data"]
    assert first["id"] == events[0].id and first["status"] == "pending"
    assert first["type"] == "hold.created" and first["delivered"] is None
    assert first["attempts"] == [
        {
            "at": int(events[0].created.timestamp()),
            "status_code": 503,
            "error": None,
            "duration_ms": 4,
        }
    ]
    shown = client.get(f"{WEBHOOKS}/{created['id']}", headers=account).json()
    assert shown["deliveries"] == {"pending": 3, "delivered": 0, "failed": 0}


def test_a_retention_pass_writes_each_account_its_own_counts(make_app, database_url, tmp_path):
    app = make_app(database_url, queue_url=f"sqlite:///{tmp_path / 'q.db'}")
    old = datetime.timedelta(days=40)
    with app.test_client() as client:
        first, second, idle = (add_account(f"acct000{n}") for n in (1, 2, 3))
        for headers in (first, second, idle):
            register(client, headers, events=["retention.completed"])
        add_records(
            *(record(f"A{n}", age=old) for n in range(3)),
            record("AV", api_key="acct0001", product="voice", age=old),
            record("AH", age=old, to="447700900777"),
            record("B1", api_key="acct0002", age=old),
            record("C1", api_key="acct0003", age=old),
        )
        client.post(HOLDS, json={"subjects": ["447700900777"], "reason": "r"}, headers=first)
        policy = {"auto_redact": "after", "after_days": 30}
        for headers in (first, second):
            client.post(
                "/v1/redact/policies",
                json={"products": {"sms": policy, "voice": policy}},
                headers=headers,
            )
        report = app.services.queue.retention()
        assert report.redacted == 5
        app.services.queue.retention()  # nothing left: no event
    sent = {event.api_key: json.loads(event.payload) for event in outbox()}
    assert set(sent) == {"acct0001", "acct0002"}
    assert sent["acct0001"]["type"] == "retention.completed"
    assert sent["acct0001"]["data"] == {
        "retention": {
            "redacted": 4,
            "held": 1,
            "products": {"sms": 3, "voice": 1},
            "finished": True,
        }
    }
    assert sent["acct0002"]["data"]["retention"] == {
        "redacted": 1, "held": 0, "products": {"sms": 1}, "finished": True
    }  # fmt: skip
    assert {event.key for event in outbox()} == {"retention"}
