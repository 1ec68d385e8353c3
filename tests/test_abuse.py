"""Abuse at the HTTP layer, against the service as the Procfile runs it (`redact serve`,
uvicorn's parser): slow clients meet the read deadline, a flood beyond the requests a worker takes
on is shed with 503 problems, and malformed or injected headers get a clear 4xx problem."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

from models import Account, database
from tests.support import PASSWORD, SUBJECT_KEY, Service, basic, cli, store_at, wait_for

pytestmark = pytest.mark.slow

READ_TIMEOUT = 2
EARLY = READ_TIMEOUT - 0.05  # the deadline, less what asyncio may fire a timer early
# (a timer runs up to the clock's resolution before its time; seen: 1.9998 s)
MAX_IN_FLIGHT = 4
REDACT = "/v1/redact/transaction"


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    directory = tmp_path_factory.mktemp("abuse")
    env = {
        "DATABASE_URL": f"sqlite:///{directory / 'redact.db'}",
        "REDACT_SUBJECT_KEY": SUBJECT_KEY,
        "REDACT_READ_TIMEOUT": str(READ_TIMEOUT),
        "REDACT_MAX_IN_FLIGHT": str(MAX_IN_FLIGHT),
        "REDACT_RATE_LIMIT": "1000/second",
    }
    with Service(env, directory) as running:
        for api_key in ("acct0001", "acct0002"):
            account = ("--api-key", api_key, "--api-secret", PASSWORD)
            cli(env, "accounts", "create", *account, check=True)
        yield running


@pytest.fixture
def connect(service):
    """Open connections to the service (each closed after the test)."""
    opened: list[socket.socket] = []

    def connect() -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", service.port), timeout=30)
        opened.append(sock)
        return sock

    yield connect
    for sock in opened:
        sock.close()


def slow_post(connect, body_start: bytes) -> socket.socket:
    """An authenticated redaction whose body stops after `body_start` of 100 bytes."""
    sock = connect()
    auth = basic("acct0001")["Authorization"].encode()
    sock.sendall(
        b"POST /v1/redact/transaction HTTP/1.1\r\nHost: x\r\nAuthorization: "
        + auth
        + b"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
        + body_start
    )
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict, bytes]:
    """(status, headers, body) of one response; the connection is read to its end."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def assert_problem(headers: dict, body: bytes) -> dict:
    assert headers["content-type"].startswith("application/json")
    problem = json.loads(body)
    assert {"type", "title", "detail", "instance"} <= set(problem), problem
    return problem


def redact(service, transaction_id="NOSUCH", api_key="acct0001") -> httpx.Response:
    return httpx.post(
        f"{service.base}{REDACT}",
        json={"id": transaction_id, "product": "sms"},
        headers=basic(api_key),
        timeout=30,
    )


def served_again(service, api_key="acct0001") -> httpx.Response:
    """The first answer to a redaction that is not a 503 (within 10 seconds)."""

    def answer():
        response = redact(service, api_key=api_key)
        return None if response.status_code == 503 else response

    return wait_for(answer, timeout=10, what="the service to serve again")


# ------------------------------------------------------------------------ slow clients


def test_headers_sent_a_byte_at_a_time_get_a_408_at_the_deadline(connect):
    sock = connect()
    started = time.monotonic()
    sock.sendall(b"POST /v1/redact/transaction HTTP/1.1\r\nHost: x\r\n")
    try:
        for _ in range(40):  # 10 seconds of dripping, if nobody stops it
            sock.sendall(b"X")
            time.sleep(0.25)
    except OSError:
        pass  # closed by the service
    status, headers, body = read_response(sock)
    elapsed = time.monotonic() - started
    assert status == 408
    assert assert_problem(headers, body)["title"] == "Request Timeout"
    assert READ_TIMEOUT <= elapsed < READ_TIMEOUT + 2


def test_a_connection_that_sends_nothing_is_closed_at_the_deadline(connect):
    sock = connect()
    started = time.monotonic()
    status, _headers, _body = read_response(sock)
    assert status == 408 and EARLY <= time.monotonic() - started < READ_TIMEOUT + 2


def test_a_body_sent_too_slowly_is_dropped_and_others_are_served(service, connect):
    started = time.monotonic()
    sock = slow_post(connect, b'{"id": ')
    assert redact(service).status_code == 404  # served meanwhile
    assert sock.recv(65536) == b""  # the service hung up on the slow one
    assert EARLY <= time.monotonic() - started < READ_TIMEOUT + 2


# ------------------------------------------------------------------------ overload


def test_requests_beyond_the_in_flight_limit_are_shed_with_503(service, connect):
    """Requests in flight are held open by their unfinished bodies; the next one of the
    same account is answered 503 at once, another account's is served, health still
    answers, and once they are gone the service serves again."""
    held = [slow_post(connect, b"{") for _ in range(MAX_IN_FLIGHT)]
    time.sleep(0.2)
    started = time.monotonic()
    shed = redact(service)
    assert shed.status_code == 503 and time.monotonic() - started < 1
    assert shed.headers["Retry-After"] == "1"
    assert assert_problem(dict(shed.headers), shed.content)["detail"].startswith(
        "The service is at capacity"
    )
    assert httpx.get(f"{service.base}/healthz").status_code == 200
    # Another account holds none of the places: it keeps its share, and is served.
    assert redact(service, api_key="acct0002").status_code == 404
    for sock in held:
        sock.close()
    assert served_again(service).status_code == 404


# ------------------------------------------------------------------------ bad headers

MALFORMED = {
    "carriage return in a value": b"X-Note: a\rInjected: 1\r\n",
    "NUL in a value": b"X-Note: a\x00b\r\n",
    "folded header": b"X-Note: a\r\n Injected: 1\r\n",
    "space before the colon": b"X-Note : a\r\n",
    "separator in a name": b"X(Note): a\r\n",
    "two different lengths": b"Content-Length: 2\r\nContent-Length: 30\r\n",
    "length and chunked": b"Content-Length: 30\r\nTransfer-Encoding: chunked\r\n",
}


@pytest.mark.parametrize("header", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_or_injected_headers_get_a_400_problem(connect, header):
    sock = connect()
    sock.sendall(
        b"POST /v1/redact/transaction HTTP/1.1\r\nHost: x\r\n"
        + header
        + b"Content-Type: application/json\r\n\r\n{}"
    )
    status, headers, body = read_response(sock)
    assert status == 400
    assert_problem(headers, body)
    assert "injected" not in headers


def test_a_crlf_in_the_path_reaches_no_header(service):
    """An encoded CR LF in the path stays in the path: a 404 problem, no header set."""
    answer = httpx.get(
        f"{service.base}/v1/redact/jobs%0d%0aInjected:%201", headers=basic("acct0001")
    )
    assert answer.status_code == 404 and "injected" not in answer.headers
    assert_problem(dict(answer.headers), answer.content)


def test_a_flood_beyond_four_times_the_capacity_is_shed_before_authentication(service, connect):
    """Requests of many accounts, each within its share, held open by unfinished bodies:
    beyond 4 x REDACT_MAX_IN_FLIGHT requests in the worker, the next one is shed before
    its credentials are read (it names no account yet); health still answers."""
    flood = 4 * MAX_IN_FLIGHT
    with store_at(service.env["DATABASE_URL"]), database.connection_context():
        for n in range(flood):
            Account.register(f"flood{n:03d}", PASSWORD)
    held = []
    for n in range(flood):
        sock = connect()
        auth = basic(f"flood{n:03d}")["Authorization"].encode()
        sock.sendall(
            b"POST /v1/redact/transaction HTTP/1.1\r\nHost: x\r\nAuthorization: "
            + auth
            + b"\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{"
        )
        held.append(sock)
    time.sleep(0.5)  # every held request has been authenticated and admitted
    shed = httpx.post(
        f"{service.base}{REDACT}",
        json={"id": "NOSUCH", "product": "sms"},
        headers={"Authorization": "Basic bm90OmNoZWNrZWQ="},
        timeout=30,
    )
    assert shed.status_code == 503  # not 401: its credentials were never read
    assert shed.headers["Retry-After"] == "1"
    assert httpx.get(f"{service.base}/healthz").status_code == 200
    for sock in held:
        sock.close()
    assert served_again(service, api_key="acct0002").status_code == 404
