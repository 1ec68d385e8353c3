"""Webhook receivers that try to turn delivery against the service: a name that resolves
to a public address for the check and to loopback for the connection (DNS rebinding),
IPv6 spellings of private addresses, a receiver that answers one byte a second or not at
all, and enough of those to keep every delivery thread busy. The receivers are real
servers on loopback; the rebinding resolver is Python's own, answering differently to a
second lookup of one name."""

from __future__ import annotations

import socket
import time

import pytest

from models.webhooks.delivery import DeliveryConfig, Dispatcher, deliver_due
from tests.support import Receiver, Trickler, add_account, wait_for
from tests.test_webhooks_delivery import attempts, events, hold, register

DEADLINE = 2
CONFIG = DeliveryConfig(timeout_seconds=DEADLINE, allow_private=True)
PUBLIC = "192.0.43.8"  # a public address (no route to it from here)


def test_a_name_that_rebinds_to_loopback_gets_nothing_delivered(
    client, account, clock, monkeypatch
):
    """The check and the connection use one lookup: the second answer (loopback, where a
    receiver listens) is never asked for, so nothing reaches it."""
    lookups = []
    lookup = socket.getaddrinfo

    def rebinding(host, port, *args, **kwargs):
        if host != "hooks.rebind.example":
            return lookup(host, port, *args, **kwargs)
        lookups.append(host)
        return lookup(PUBLIC if len(lookups) == 1 else "127.0.0.1", port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    with Receiver() as receiver:
        register(client, account, f"http://hooks.rebind.example:{receiver.port}/hooks")
        hold(client, account)
        assert deliver_due(clock, DeliveryConfig(timeout_seconds=1)) == 0
        assert receiver.deliveries == []
    assert lookups == ["hooks.rebind.example"]
    (attempt,) = attempts(events()[0])
    assert attempt.status_code is None and attempt.error


@pytest.mark.parametrize(
    "host",
    [
        "[::1]",
        "[::]",
        "[::ffff:127.0.0.1]",  # IPv4-mapped loopback
        "[::ffff:a9fe:a9fe]",  # IPv4-mapped 169.254.169.254, the metadata service
        "[64:ff9b::a9fe:a9fe]",  # the same through NAT64's well-known prefix
        "[2002:a00:1::1]",  # 6to4 of 10.0.0.1
        "[fd00:ec2::254]",  # a unique local address (a cloud's IPv6 metadata service)
        "[fe80::1]",
        "2130706433",  # 127.0.0.1 as one number
        "0x7f.1",
        "100.64.0.1",  # shared address space
    ],
)
def test_ipv6_and_other_spellings_of_private_addresses_are_refused(client, account, clock, host):
    register(client, account, f"http://{host}:9/hooks")
    hold(client, account)
    assert deliver_due(clock, DeliveryConfig(timeout_seconds=1)) == 0
    (attempt,) = attempts(events()[0])
    assert attempt.status_code is None and attempt.error.startswith("refused: "), attempt.error


@pytest.mark.slow
def test_a_receiver_that_trickles_ends_its_attempt_at_the_deadline(client, account, clock):
    """A byte every half second: every read returns in time, and the attempt still ends
    at its deadline (then it is retried on the schedule)."""
    with Trickler(interval=0.5) as trickler:
        register(client, account, trickler.url)
        hold(client, account)
        assert deliver_due(clock, CONFIG) == 0
        wait_for(lambda: trickler.closed, timeout=10, what="the hang-up")
    (event,) = events()
    (attempt,) = attempts(event)
    assert attempt.status_code is None
    assert attempt.error == f"ReadTimeout: no answer within the attempt's {DEADLINE} s deadline"
    assert DEADLINE * 1000 <= attempt.duration_ms < DEADLINE * 1000 + 1000
    assert trickler.closed[0] < DEADLINE + 1
    assert event.status == "pending" and event.next_attempt_at > clock()


@pytest.mark.slow
def test_a_receiver_that_never_answers_delays_no_other_account(client, account, clock):
    other = add_account("acct0002")
    with Trickler(interval=None) as silent, Receiver() as fast:
        register(client, account, silent.url)
        register(client, other, fast.url)
        dispatcher = Dispatcher(clock, _config(threads=8, timeout=10))
        dispatcher.start()
        try:
            hold(client, account, 1)
            wait_for(lambda: silent.requests, timeout=10, what="the silent endpoint's request")
            hold(client, other, 2)
            wait_for(lambda: fast.deliveries, timeout=5, what="the other account's event")
            assert silent.closed == []  # still waiting for its answer
        finally:
            dispatcher.stop()


@pytest.mark.slow
def test_many_slow_endpoints_of_one_account_leave_threads_to_another(client, account, clock):
    other = add_account("acct0002")
    with Trickler(interval=None) as silent, Receiver() as fast:
        for n in range(10):
            register(client, account, f"{silent.url}/{n}")
        register(client, other, fast.url)
        dispatcher = Dispatcher(clock, _config(threads=4, timeout=10))
        dispatcher.start()
        try:
            hold(client, account, 1)  # one event for each of the ten
            wait_for(lambda: silent.requests, timeout=10, what="the slow endpoints' requests")
            hold(client, other, 2)
            wait_for(lambda: fast.deliveries, timeout=5, what="the other account's event")
            assert silent.requests == 1  # a quarter of four threads: the account's share
        finally:
            dispatcher.stop()


@pytest.mark.slow
def test_with_every_thread_stalled_another_account_waits_one_deadline_at_most(
    client, account, clock
):
    """Four accounts whose endpoints trickle their answers hold all four threads; the
    fifth account's event goes out when the first attempt reaches its deadline, before any
    of the stalled endpoints is tried again."""
    stalling = [account] + [add_account(f"acct000{n}") for n in range(2, 5)]
    well_behaved = add_account("acct0009")
    with Trickler(interval=0.5) as silent, Receiver() as fast:
        for n, headers in enumerate(stalling):
            for m in range(3):
                register(client, headers, f"{silent.url}/{n}/{m}")
        register(client, well_behaved, fast.url)
        for n, headers in enumerate(stalling):
            hold(client, headers, n)
        dispatcher = Dispatcher(clock, _config(threads=4, timeout=DEADLINE))
        dispatcher.start()
        try:
            wait_for(lambda: silent.requests == 4, timeout=10, what="every thread stalled")
            stalled_at = time.monotonic()
            hold(client, well_behaved, 9)
            wait_for(lambda: fast.deliveries, timeout=DEADLINE + 5, what="the fast event")
            waited = time.monotonic() - stalled_at
            assert waited < DEADLINE + 1.5, waited
            assert silent.requests <= 8  # no stalled endpoint went before it
        finally:
            dispatcher.stop()


def _config(*, threads: int, timeout: float) -> DeliveryConfig:
    return DeliveryConfig(
        timeout_seconds=timeout, threads=threads, poll_seconds=0.05, allow_private=True
    )
