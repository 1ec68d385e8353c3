"""Delivering the webhook outbox to real HTTP receivers on this machine: each delivery
verified with the `standardwebhooks` package, a receiver down then up gets every event
in order, the backoff schedule, giving up after three days, one account's slow endpoint
not delaying another's, and a worker killed between a delivery and recording it (the
event comes again, with the same `webhook-id`)."""

from __future__ import annotations

import datetime
import json
import os
import signal
import threading

import pytest
import standardwebhooks

from models import Account, database
from models.erasure.holds import create_hold
from models.webhooks.delivery import DeliveryConfig, Dispatcher, deliver_due
from models.webhooks.endpoints import create_webhook
from models.webhooks.rows import WebhookAttempt, WebhookEvent
from tests.support import Receiver, add_account, free_port, served, start, stop, store_at, wait_for

WEBHOOKS = "/v1/redact/webhooks"
HOLDS = "/v1/redact/holds"
# The receivers listen on 127.0.0.1, which the service refuses unless allowed.
CONFIG = DeliveryConfig(
    timeout_seconds=2, retry_base_seconds=5, retry_max_seconds=60, allow_private=True
)


def register(client, headers, url: str, events=("hold.created", "hold.released")) -> dict:
    response = client.post(WEBHOOKS, json={"url": url, "events": list(events)}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def hold(client, headers, n: int = 0) -> str:
    body = {"subjects": [f"4477009001{n:02d}"], "reason": "matter"}
    response = client.post(HOLDS, json=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["id"]


def events() -> list[WebhookEvent]:
    with database.connection_context():
        return list(WebhookEvent.select().order_by(WebhookEvent.seq))


def attempts(event: WebhookEvent) -> list[WebhookAttempt]:
    with database.connection_context():
        return list(
            WebhookAttempt.select()
            .where(WebhookAttempt.event == event.seq)
            .order_by(WebhookAttempt.seq)
        )


def verified(receiver: Receiver, secret: str) -> list[dict]:
    """Each delivery the receiver got, verified as a receiver would."""
    webhook = standardwebhooks.Webhook(secret)
    return [webhook.verify(d.body, d.headers) for d in receiver.deliveries]


def test_an_event_arrives_signed_as_standard_webhooks_specify(client, account, clock):
    with Receiver() as receiver:
        endpoint = register(client, account, receiver.url)
        hold_id = hold(client, account)
        assert deliver_due(clock, CONFIG) == 1
        (payload,) = verified(receiver, endpoint["secret"])
    assert payload["type"] == "hold.created"
    assert payload["data"]["hold"]["id"] == hold_id
    (event,) = events()
    (delivery,) = receiver.deliveries
    assert delivery.headers["webhook-id"] == event.id and event.id.startswith("msg_")
    assert delivery.headers["content-type"] == "application/json"
    assert (event.status, event.attempts, event.delivered_at) == ("delivered", 1, clock())
    (attempt,) = attempts(event)
    assert (attempt.status_code, attempt.error) == (200, None)
    # Delivered is delivered: nothing is sent again.
    assert deliver_due(clock, CONFIG) == 0 and len(receiver.deliveries) == 1
    shown = client.get(f"{WEBHOOKS}/{endpoint['id']}", headers=account).json()
    assert shown["deliveries"] == {"pending": 0, "delivered": 1, "failed": 0}


def test_a_signature_made_with_another_secret_is_refused(client, account, clock):
    with Receiver() as receiver:
        register(client, account, receiver.url)
        other = register(client, account, "https://example.com/other")
        hold(client, account)
        deliver_due(clock, DeliveryConfig(timeout_seconds=0.5, allow_private=True))
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        verified(receiver, other["secret"])


def test_a_receiver_down_then_up_gets_every_event_in_order(client, account, clock):
    port = free_port()  # nothing listens there yet
    endpoint = register(client, account, f"http://127.0.0.1:{port}/hooks")
    first, second = hold(client, account, 1), hold(client, account, 2)
    client.post(f"{HOLDS}/{first}/release", headers=account)
    assert deliver_due(clock, CONFIG) == 0
    head = events()[0]
    assert [len(attempts(e)) for e in events()] == [1, 0, 0]  # only the oldest is tried
    assert attempts(head)[0].status_code is None and attempts(head)[0].error
    clock.advance(seconds=5)
    assert deliver_due(clock, CONFIG) == 0
    clock.advance(seconds=9)  # the second wait is 10 s
    assert deliver_due(clock, CONFIG) == 0 and len(attempts(head)) == 2
    with Receiver(port) as receiver:
        clock.advance(seconds=1)
        assert deliver_due(clock, CONFIG) == 3
        payloads = verified(receiver, endpoint["secret"])
    assert [(p["type"], p["data"]["hold"]["id"]) for p in payloads] == [
        ("hold.created", first),
        ("hold.created", second),
        ("hold.released", first),
    ]
    assert [d.headers["webhook-id"] for d in receiver.deliveries] == [e.id for e in events()]
    history = [[(a.status_code, a.error is not None) for a in attempts(e)] for e in events()]
    assert history == [[(None, True), (None, True), (200, False)], [(200, False)], [(200, False)]]


def test_failed_attempts_back_off_doubling_up_to_the_cap(client, account, clock):
    with Receiver(status=503) as receiver:
        register(client, account, receiver.url)
        hold(client, account)
        waits = []
        for _ in range(6):
            deliver_due(clock, CONFIG)
            (event,) = events()
            waits.append((event.next_attempt_at - clock()).total_seconds())
            clock.now = event.next_attempt_at
    assert waits == [5, 10, 20, 40, 60, 60]
    assert [a.status_code for a in attempts(event)] == [503] * 6
    assert len(receiver.deliveries) == 6
    assert len({d.headers["webhook-id"] for d in receiver.deliveries}) == 1


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "localhost", "10.1.2.3", "169.254.169.254", "0.0.0.0", "192.168.0.1"]
)
def test_a_private_address_is_refused_unless_allowed(client, account, clock, host):
    """No tenant reaches the service's own network through a webhook: a loopback, private
    or link-local address (or a name resolving to one) is a failed attempt, never sent."""
    with Receiver() as receiver:
        port = receiver.url.split(":")[2].split("/")[0]
        endpoint = register(client, account, f"http://{host}:{port}/hooks")
        hold(client, account, 1)
        deliver_due(clock, DeliveryConfig(timeout_seconds=2))
        assert receiver.deliveries == []
    deliveries = client.get(
        f"/v1/redact/webhooks/{endpoint['id']}/deliveries", headers=account
    ).json()["data"]
    (attempt,) = deliveries[0]["attempts"]
    assert attempt["error"].startswith("refused: ") and attempt["status_code"] is None


def test_a_redirect_is_a_failed_attempt(client, account, clock):
    with Receiver(status=302) as receiver:
        register(client, account, receiver.url)
        hold(client, account)
        assert deliver_due(clock, CONFIG) == 0
    (event,) = events()
    assert [a.status_code for a in attempts(event)] == [302] and event.status == "pending"


def test_an_event_is_given_up_after_three_days_and_the_next_goes_on(client, account, clock):
    config = DeliveryConfig(
        timeout_seconds=2, allow_private=True
    )  # 5 s doubling, at most 6 h, for 3 days
    with Receiver(status=500) as receiver:
        endpoint = register(client, account, receiver.url)
        hold(client, account, 1)
        hold(client, account, 2)
        head = events()[0]
        while events()[0].status == "pending":
            clock.now = events()[0].next_attempt_at
            deliver_due(clock, config)
        gave_up = events()[0]
        assert gave_up.status == "failed"
        assert clock() - head.created >= datetime.timedelta(days=3)
        # Waits of 5 s doubling to 5 * 2**12 s (11 h in all), then of 6 h: the 25th
        # attempt is the first after three days.
        assert gave_up.attempts == len(attempts(gave_up)) == 25
        receiver.status = 204
        assert deliver_due(clock, config) == 1
        assert [json.loads(d.body)["data"]["hold"]["counts"]["subjects"] for d in
                receiver.deliveries][-1] == 1  # fmt: skip
    assert events()[1].status == "delivered"
    shown = client.get(f"{WEBHOOKS}/{endpoint['id']}", headers=account).json()
    assert shown["deliveries"] == {"pending": 0, "delivered": 1, "failed": 1}


def test_deleting_an_endpoint_mid_attempt_leaves_its_events_gone(client, account, clock):
    with Receiver() as receiver:
        endpoint = register(client, account, receiver.url)
        hold(client, account)
        receiver.hold = threading.Event()
        dispatcher = Dispatcher(clock, CONFIG)
        dispatcher.tick()
        assert receiver.arrived.wait(10)
        deleted = client.delete(f"{WEBHOOKS}/{endpoint['id']}", headers=account)
        assert deleted.status_code == 204
        receiver.hold.set()
        dispatcher.stop()
    assert events() == []


def test_one_accounts_slow_endpoint_does_not_delay_anothers(client, account, clock):
    other = add_account("acct0002")
    with Receiver() as slow, Receiver() as fast:
        slow.hold = threading.Event()
        register(client, account, slow.url)
        register(client, other, fast.url)
        hold(client, account, 1)
        hold(client, account, 2)
        dispatcher = Dispatcher(
            clock, DeliveryConfig(timeout_seconds=30, poll_seconds=0.05, allow_private=True)
        )
        dispatcher.start()
        try:
            assert slow.arrived.wait(10)
            hold(client, other, 3)  # while the slow endpoint holds its first event
            wait_for(lambda: fast.deliveries, timeout=10, what="the fast endpoint's event")
            assert len(slow.deliveries) == 1
            slow.hold.set()
            wait_for(lambda: len(slow.deliveries) == 2, timeout=10, what="the slow one's next")
        finally:
            slow.hold.set()
            dispatcher.stop()
    assert [d.event["data"]["hold"]["counts"]["subjects"] for d in slow.deliveries] == [1, 1]


# ---------------------------------------------------------------- workers, as processes


def prepare_endpoint(env: dict, url: str, api_key: str = "acct0001") -> str:
    """`api_key`'s account with an endpoint at `url` for hold.created and one hold, in the
    command's store; the endpoint's secret."""
    with store_at(env["DATABASE_URL"], tables=True):
        Account.create(api_key=api_key, secret_hash="x", products="sms")
        now = datetime.datetime.now(datetime.UTC)
        endpoint = create_webhook(
            api_key=api_key, url=url, events=["hold.created"], description=None, now=now
        )
        create_hold(
            api_key=api_key,
            subjects=["447700900123"],
            transactions=[],
            reason="r",
            now=now,
            actor="test",
        )
        return endpoint.secret


def _event(env: dict) -> WebhookEvent:
    with store_at(env["DATABASE_URL"]):
        (event,) = WebhookEvent.select()
        event.attempt_rows = list(WebhookAttempt.select().where(WebhookAttempt.event == event.seq))
        return event


WORKER_ENV = {
    "REDACT_WEBHOOK_POLL_SECONDS": "1",
    "REDACT_WEBHOOK_ALLOW_PRIVATE": "1",
    "REDACT_WEBHOOK_TIMEOUT_SECONDS": "1",  # an attempt's claim: 6 s
}


@pytest.mark.slow
def test_a_worker_killed_between_delivery_and_recording_it_sends_it_again(env, tmp_path):
    env = {**env, **WORKER_ENV}
    with Receiver() as receiver:
        receiver.hold = threading.Event()
        secret = prepare_endpoint(env, receiver.url)
        worker = start(env, tmp_path, "worker", "--threads", "1")
        try:
            assert receiver.arrived.wait(30), "the worker sent nothing"
            os.kill(worker.pid, signal.SIGKILL)  # the receiver has it; the worker never hears
            worker.wait(timeout=30)
        finally:
            stop(worker)
        receiver.hold.set()
        event = _event(env)
        assert (event.status, event.attempts, event.attempt_rows) == ("pending", 0, [])
        receiver.hold = None
        again = start(env, tmp_path, "worker", "--threads", "1", log="worker2")
        try:
            wait_for(lambda: len(receiver.deliveries) == 2, timeout=60, what="the event again")
            wait_for(lambda: _event(env).status == "delivered", timeout=30, what="recorded")
        finally:
            stop(again)
        first, second = receiver.deliveries
        assert first.headers["webhook-id"] == second.headers["webhook-id"] == event.id
        assert first.body == second.body
        assert [standardwebhooks.Webhook(secret).verify(d.body, d.headers)["type"]
                for d in receiver.deliveries] == ["hold.created"] * 2  # fmt: skip
    event = _event(env)
    assert [a.status_code for a in event.attempt_rows] == [200]


@pytest.mark.slow
def test_redact_serve_alone_delivers(env, tmp_path):
    env = {**env, **WORKER_ENV}
    with Receiver() as receiver:
        secret = prepare_endpoint(env, receiver.url)
        with served(env, tmp_path):
            wait_for(lambda: receiver.deliveries, timeout=30, what="a delivery from serve")
        (payload,) = [standardwebhooks.Webhook(secret).verify(d.body, d.headers)
                      for d in receiver.deliveries]  # fmt: skip
    assert payload["type"] == "hold.created"
