"""Webhook receivers that try to turn delivery against the service: a name that resolves
to a public address for the check and to loopback for the connection (DNS rebinding),
IPv6 spellings of private addresses, a receiver that answers one byte a second or not at
all, and enough of those to keep every delivery thread busy. The receivers are real
servers on loopback; the rebinding resolver is Python's own, answering differently to a
second lookup of one name."""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
import subprocess
import threading
import time

import pytest

from models.webhooks.delivery import DeliveryConfig, Dispatcher, deliver_due
from models.webhooks.rows import WebhookEvent
from tests.support import (
    Receiver,
    Trickler,
    add_account,
    redact_command,
    start,
    stop,
    store_at,
    unavailable,
    wait_for,
)
from tests.test_webhooks_delivery import attempts, events, hold, prepare_endpoint, register

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
    "address",
    [
        "::1",
        "::",
        "::ffff:127.0.0.1",  # IPv4-mapped loopback
        "::ffff:a9fe:a9fe",  # IPv4-mapped 169.254.169.254, the metadata service
        "64:ff9b::a9fe:a9fe",  # the same through NAT64's well-known prefix
        "2002:a00:1::1",  # 6to4 of 10.0.0.1
        "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo of 10.0.0.1
        "fd00:ec2::254",  # a unique local address (a cloud's IPv6 metadata service)
        "fe80::1",
    ],
)
def test_a_name_resolving_to_a_private_ipv6_form_is_refused(
    client, account, clock, monkeypatch, address
):
    lookup = socket.getaddrinfo

    def resolving(host, port, *args, **kwargs):
        if host == "v6.hooks.example":
            return lookup(address, port, socket.AF_INET6, *args[1:], **kwargs)
        return lookup(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolving)
    _refused(client, account, clock, "http://v6.hooks.example:9/hooks", address)


@pytest.mark.parametrize(
    "host",
    ["2130706433", "0x7f.1", "127.1", "100.64.0.1"],  # 127.0.0.1 spelt otherwise; shared space
)
def test_other_spellings_of_private_ipv4_addresses_are_refused(client, account, clock, host):
    _refused(client, account, clock, f"http://{host}:9/hooks", "")


def _refused(client, account, clock, url: str, address: str) -> None:
    register(client, account, url)
    hold(client, account)
    assert deliver_due(clock, DeliveryConfig(timeout_seconds=1)) == 0
    (attempt,) = attempts(events()[0])
    assert attempt.status_code is None and attempt.error.startswith("refused: "), attempt.error
    if address:  # the address refused is the one the name resolved to
        refused = attempt.error.rsplit("(", 1)[1].rstrip(")")
        assert ipaddress.ip_address(refused) == ipaddress.ip_address(address), attempt.error


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


# ------------------------------------------------------------------ TLS to the pinned address


def _certificate(directory, name: str) -> tuple[str, str, str]:
    """A CA (ca.pem) and a certificate it signed for the DNS name `name` only, with its
    key: the three files' paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def made(subject: str, key, issuer: str, issuer_key, *, ca: bool):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            san = x509.SubjectAlternativeName([x509.DNSName(subject)])
            builder = builder.add_extension(san, critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = made("test CA", ca_key, "test CA", ca_key, ca=True)
    leaf = made(name, key, "test CA", ca_key, ca=False)
    paths = [str(directory / f) for f in ("ca.pem", "cert.pem", "key.pem")]
    for path, data in zip(
        paths,
        [
            ca.public_bytes(serialization.Encoding.PEM),
            leaf.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        ],
        strict=True,
    ):
        with open(path, "wb") as file:
            file.write(data)
    return paths[0], paths[1], paths[2]


class TLSReceiver(Receiver):
    """A Receiver behind TLS with `cert`, keeping the SNI name each handshake sent."""

    def __init__(self, cert: str, key: str):
        super().__init__()
        self.names: list[str | None] = []
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        context.sni_callback = lambda _socket, name, _context: self.names.append(name)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)


@pytest.mark.slow
def test_https_goes_to_the_pinned_address_verified_against_the_host_name(env, tmp_path):
    """A worker delivers over TLS to `localhost` (its certificate names it; the CA is the
    test's, through OpenSSL's SSL_CERT_FILE): SNI and Host name the host. The same
    receiver as `127.0.0.1`, which its certificate does not name, fails verification."""
    ca, cert, key = _certificate(tmp_path, "localhost")
    env = {
        **env,
        "SSL_CERT_FILE": ca,
        "REDACT_WEBHOOK_ALLOW_PRIVATE": "1",
        "REDACT_WEBHOOK_POLL_SECONDS": "1",
        "REDACT_WEBHOOK_TIMEOUT_SECONDS": "5",
    }
    receiver = TLSReceiver(cert, key)
    try:
        for api_key, host in (("acct0001", "localhost"), ("acct0002", "127.0.0.1")):
            prepare_endpoint(env, f"https://{host}:{receiver.port}/hooks", api_key)
        worker = start(env, tmp_path, "worker", "--threads", "2")
        try:
            wait_for(lambda: receiver.deliveries, timeout=30, what="the TLS delivery")
            wait_for(lambda: _attempted(env) == 2, timeout=30, what="both attempts")
        finally:
            stop(worker)
    finally:
        receiver.close()
    (delivery,) = receiver.deliveries
    assert delivery.headers["host"] == f"localhost:{receiver.port}"
    assert "localhost" in receiver.names
    with store_at(env["DATABASE_URL"]):
        outcomes = {
            e.api_key: [(a.status_code, a.error) for a in attempts(e)]
            for e in WebhookEvent.select()
        }
    assert outcomes["acct0001"] == [(200, None)]
    ((status, error),) = outcomes["acct0002"][:1]
    assert status is None and "CERTIFICATE_VERIFY_FAILED" in error, error


def _attempted(env: dict) -> int:
    with store_at(env["DATABASE_URL"]):
        return WebhookEvent.select().where(WebhookEvent.attempts > 0).count()


# ---------------------------------------------------------- a real rebinding name server


class RebindingNameServer:
    """A DNS server on 127.0.0.1:53 (UDP) that answers the first A query for `name` with
    a public address and every later one with 127.0.0.1; it has no IPv6 address for it.
    `asked` counts the A queries."""

    def __init__(self, name: str):
        import dns.message
        import dns.rdatatype
        import dns.rrset

        self.name = name.rstrip(".") + "."
        self.asked = 0
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 53))

        def serve() -> None:
            while True:
                try:
                    wire, sender = self._socket.recvfrom(4096)
                except OSError:
                    return
                query = dns.message.from_wire(wire)
                answer = dns.message.make_response(query)
                question = query.question[0]
                if question.name.to_text() == self.name and question.rdtype == dns.rdatatype.A:
                    self.asked += 1
                    address = PUBLIC if self.asked == 1 else "127.0.0.1"
                    answer.answer.append(dns.rrset.from_text(self.name, 0, "IN", "A", address))
                self._socket.sendto(answer.to_wire(), sender)

        threading.Thread(target=serve, daemon=True).start()

    def close(self) -> None:
        self._socket.close()


@pytest.mark.root
@pytest.mark.slow
def test_a_worker_asks_a_rebinding_name_server_once_and_delivers_nothing(env, tmp_path):
    """`redact worker` in a mount namespace of its own whose /etc/resolv.conf names the
    test's name server: the system resolver, as in production, asked by the worker
    process; the receiver on loopback, where the second answer points, gets nothing."""
    try:
        server = RebindingNameServer("hooks.rebind.test")
    except PermissionError:
        unavailable("binding port 53 needs root")
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    env = {**env, "REDACT_WEBHOOK_POLL_SECONDS": "1", "REDACT_WEBHOOK_TIMEOUT_SECONDS": "2"}
    with Receiver() as receiver:
        prepare_endpoint(env, f"http://hooks.rebind.test:{receiver.port}/hooks")
        namespaced = [
            "unshare", "--mount", "sh", "-c",
            f'mount --bind {resolv} /etc/resolv.conf && exec "$@"', "sh",
            *redact_command("worker", "--threads", "1"),
        ]  # fmt: skip
        with open(tmp_path / "worker.log", "wb") as log:
            worker = subprocess.Popen(
                namespaced, env={**os.environ, **env}, cwd=tmp_path, stdout=log, stderr=log
            )
        try:
            wait_for(lambda: _attempted(env), timeout=30, what="an attempt")
        finally:
            stop(worker)
            server.close()
        assert receiver.deliveries == []
    assert server.asked == 1
    with store_at(env["DATABASE_URL"]):
        (event,) = WebhookEvent.select()
        (attempt,) = attempts(event)
    assert attempt.status_code is None and attempt.error, attempt.error
