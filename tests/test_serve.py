"""`redact serve` as users run it, in a subprocess: several workers share the connections
evenly and report one sum of metrics, and a service started before its database waits for
it instead of exiting."""

from __future__ import annotations

import collections
import http.client
import json
import os
import signal

import httpx
import pytest

from tests.support import (
    BEARER,
    PASSWORD,
    PROBLEM_FIELDS,
    SUBJECT_KEY,
    TOKEN,
    PrivatePostgres,
    basic,
    cli,
    postgres_env,
    record,
    samples,
    served,
    value,
    wait_for,
    worker_pids,
)

pytestmark = pytest.mark.slow


def test_serve_with_two_workers_reports_one_sum(tmp_path, monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)  # serve makes its own
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'redact.db'}",
        "REDACT_SUBJECT_KEY": SUBJECT_KEY,
        "REDACT_METRICS_TOKEN": TOKEN,
    }
    with served(env, tmp_path, "--workers", "2") as (_, base):
        with httpx.Client(base_url=base) as client:
            before = samples(client.get("/metrics", headers=BEARER).text)
            for _ in range(20):
                assert client.get("/healthz").status_code == 200
        # New connections, so that both workers answer scrapes.
        scrapes = [samples(httpx.get(f"{base}/metrics", headers=BEARER).text) for _ in range(12)]
    healthz = "redact_http_requests_total"
    counts = {
        value(s, healthz, operation="/healthz", status="200")
        - value(before, healthz, operation="/healthz", status="200")
        for s in scrapes
    }
    assert counts == {20}


def server_sockets(port: int) -> dict[str, int]:
    """The server ends of the TCP connections to `port`, in any state but listening: each
    one's socket (as /proc/PID/fd links name it) and its client's port (/proc/net/tcp)."""
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
                if state != "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    found[f"socket:[{inode}]"] = int(remote.rsplit(":", 1)[1], 16)
    return found


def socket_holders(sockets) -> dict[str, int]:
    """Which process holds each of `sockets` open (by /proc/PID/fd)."""
    holders = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:  # gone, or not ours to read
            continue
        holders.update({link: int(pid) for link in links if link in sockets})
    return holders


def connection_owners(port: int) -> collections.Counter:
    """How many TCP connections to `port` each process holds open."""
    return collections.Counter(socket_holders(server_sockets(port)).values())


def keep_alive_connections(base: str, count: int) -> list[http.client.HTTPConnection]:
    """`count` connections, each of which has had a request answered."""
    port = int(base.rsplit(":", 1)[1])
    connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(count)]
    for connection in connections:
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        response.read()
        assert response.status == 200
    return connections


def test_serve_shares_connections_evenly_between_workers(tmp_path):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'redact.db'}", "REDACT_SUBJECT_KEY": SUBJECT_KEY}
    with served(env, tmp_path, "--workers", "2") as (process, base):
        port = int(base.rsplit(":", 1)[1])
        connections = keep_alive_connections(base, 8)
        owners = connection_owners(port)
        assert process.pid not in owners  # the parent hands every connection on
        assert sorted(owners.values()) == [4, 4], owners
        first = min(owners)
        for connection in connections:  # the first worker's four go
            if connection_owners_of(connection, port) == first:
                connection.close()
        wait_for(lambda: first not in connection_owners(port), what="the four closed")
        # The next four go where the room is.
        connections += keep_alive_connections(base, 4)
        assert connection_owners(port)[first] == 4
        for connection in connections:
            connection.close()


def connection_owners_of(connection: http.client.HTTPConnection, port: int) -> int:
    """The pid holding the server's end of `connection`."""
    assert connection.sock is not None
    client_port = connection.sock.getsockname()[1]
    [link] = [link for link, peer in server_sockets(port).items() if peer == client_port]
    return socket_holders({link})[link]


def test_serve_replaces_a_worker_that_dies(tmp_path):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'redact.db'}", "REDACT_SUBJECT_KEY": SUBJECT_KEY}
    with served(env, tmp_path, "--workers", "2") as (process, base):
        port = int(base.rsplit(":", 1)[1])
        for connection in keep_alive_connections(base, 2):
            connection.close()
        wait_for(lambda: not connection_owners(port), what="the connections closed")
        workers = worker_pids(process.pid)
        assert len(workers) == 2
        os.kill(workers[0], signal.SIGKILL)

        # Its replacement is started...
        wait_for(
            lambda: len(now := worker_pids(process.pid)) == 2 and workers[0] not in now,
            what="a replacement worker",
        )

        def two_workers_answer() -> bool:
            try:
                connections = keep_alive_connections(base, 2)
            except ConnectionError:  # handed to the dead worker as it died
                return False
            owners = connection_owners(port)
            for connection in connections:
                connection.close()
            wait_for(lambda: not connection_owners(port), what="the connections closed")
            return len(owners) == 2 and workers[0] not in owners

        # ...and, once ready, it and the survivor take new connections between them.
        wait_for(two_workers_answer, timeout=30, interval=0.5, what="a replaced worker")
    assert process.returncode == 0


@pytest.mark.postgres
def test_serve_starts_before_its_database_and_serves_once_it_answers(tmp_path):
    """Under an orchestrator the database may come up after the service: it starts,
    answers /healthz, names the database on /readyz, answers 503 problems, and serves
    (creating the tables) once the database answers."""
    postgres = PrivatePostgres()  # created, not started
    env = {
        **postgres_env(),
        "DATABASE_URL": postgres.url,
        "REDACT_QUEUE_URL": f"sqlite:///{tmp_path / 'queue.db'}",
        "REDACT_MIN_AGE_SECONDS": "0",
    }
    try:
        with served(env, tmp_path) as (process, base):
            ready = httpx.get(f"{base}/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"]["database"] == "down"
            assert "database" in ready.json()["detail"]
            refused = httpx.post(
                f"{base}/v1/redact/transaction",
                headers=basic("acct0001"),
                json={"id": "0A0000000123ABCD1", "product": "sms"},
            )
            assert refused.status_code == 503
            assert set(refused.json()) == PROBLEM_FIELDS
            assert int(refused.headers["Retry-After"]) >= 1

            postgres.start()
            wait_for(
                lambda: httpx.get(f"{base}/readyz").status_code == 200,
                timeout=60,
                interval=0.5,
                what="/readyz to answer 200",
            )
            account = ("--api-key", "acct0001", "--api-secret", PASSWORD)
            cli(env, "accounts", "create", *account, check=True)
            loaded = json.dumps(record("0A0000000123ABCD1"))
            cli(env, "transactions", "load", "-", stdin=loaded, check=True)
            answered = httpx.post(
                f"{base}/v1/redact/transaction",
                headers=basic("acct0001"),
                json={"id": "0A0000000123ABCD1", "product": "sms"},
            )
            assert answered.status_code == 204
            assert process.poll() is None
    finally:
        postgres.destroy()
