"""One tenant's burst never fails another tenant's request: against the service as the
Procfile runs it (`redact serve`), with one worker and the limiter in memory, and with two
workers sharing the limiter in Redis.

Account A sends 400 redactions within half a second (its limit is 170 a second) while
account B sends 20. A gets at most 170 answers that are not 429, and no 5xx; B gets the
answer it would get alone, every time. The client speaks HTTP/1.1 over raw keep-alive
connections, so that it can send the burst on time on the cores it shares."""

from __future__ import annotations

import asyncio
import collections
import json
import time
import urllib.parse

import pytest

from tests.support import PASSWORD, SUBJECT_KEY, Service, basic, cli

pytestmark = pytest.mark.slow

BURST, BURST_SECONDS, OTHER = 400, 0.5, 20
LIMIT = 170
CONNECTIONS = {"accta000": 128, "acctb000": 10}


def request_bytes(api_key: str, number: int) -> bytes:
    body = json.dumps({"id": f"0A{number:015d}", "product": "sms"}).encode()
    return (
        b"POST /v1/redact/transaction HTTP/1.1\r\nHost: test\r\n"
        b"Authorization: "
        + basic(api_key)["Authorization"].encode()
        + b"\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


async def exchange(reader, writer, request: bytes) -> int:
    """Send one request on a keep-alive connection; the status of its response."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip().lower()
    if headers.get(b"transfer-encoding") == b"chunked":
        while size := int((await reader.readuntil(b"\r\n"))[:-2], 16):
            await reader.readexactly(size + 2)
        await reader.readuntil(b"\r\n")
    elif int(headers.get(b"content-length", 0)):
        await reader.readexactly(int(headers[b"content-length"]))
    return int(head.split(b" ", 2)[1])


async def offer(base: str, schedule: list[tuple[float, str, int]]) -> tuple[dict, float]:
    """Send each (offset, api_key, number) at its offset (seconds) from the start, on the
    account's own connections; the statuses by account, and the span the sending took."""
    url = urllib.parse.urlsplit(base)
    connections = {
        key: [await asyncio.open_connection(url.hostname, url.port) for _ in range(count)]
        for key, count in CONNECTIONS.items()
    }
    queues: dict = collections.defaultdict(list)
    for index, (offset, api_key, number) in enumerate(item for item in schedule):
        queues[(api_key, index % CONNECTIONS[api_key])].append((offset, api_key, number))
    statuses: dict = collections.defaultdict(list)
    sent: list[float] = []
    start = time.monotonic() + 0.1

    async def run(api_key: str, slot: int) -> None:
        reader, writer = connections[api_key][slot]
        for offset, _, number in queues[(api_key, slot)]:
            await asyncio.sleep(max(0.0, start + offset - time.monotonic()))
            sent.append(time.monotonic())
            statuses[api_key].append(await exchange(reader, writer, request_bytes(api_key, number)))
        writer.close()

    await asyncio.gather(
        *(run(key, slot) for key, count in CONNECTIONS.items() for slot in range(count))
    )
    return statuses, max(sent) - min(sent)


@pytest.fixture(
    params=[
        "one worker, memory limiter",
        pytest.param("two workers, Redis limiter", marks=pytest.mark.redis),
    ]
)
def service(request, tmp_path):
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'redact.db'}",
        "REDACT_SUBJECT_KEY": SUBJECT_KEY,
        "REDACT_QUEUE_URL": f"sqlite:///{tmp_path / 'queue.db'}",
    }
    workers = 1
    if "Redis" in request.param:
        env["RATELIMIT_STORAGE_URI"] = request.getfixturevalue("redis_url")
        workers = 2
    with Service(env, tmp_path, workers=workers) as running:
        for api_key in CONNECTIONS:
            account = ("--api-key", api_key, "--api-secret", PASSWORD)
            cli(env, "accounts", "create", *account, check=True)
        yield running


def test_a_burst_of_one_account_fails_no_request_of_another(service):
    burst = [(i * BURST_SECONDS / BURST, "accta000", i) for i in range(BURST)]
    other = [(i * BURST_SECONDS / OTHER, "acctb000", BURST + i) for i in range(OTHER)]
    # Warm the credential cache of each worker, so that the burst meets the steady path.
    warm = [(0.0, key, 10_000 + i) for key in CONNECTIONS for i in range(4)]
    asyncio.run(offer(service.base, warm))
    time.sleep(1.1)  # the warm-up requests leave the one-second window

    statuses, span = asyncio.run(offer(service.base, sorted(burst + other)))
    assert span < 1.0, f"the client could not send the burst within a second ({span:.2f} s)"
    a, b = collections.Counter(statuses["accta000"]), collections.Counter(statuses["acctb000"])
    assert sum(a.values()) == BURST and sum(b.values()) == OTHER
    assert set(a) <= {404, 429}, a  # unknown ids: 404 when admitted, never a 5xx
    assert a[404] <= LIMIT, a
    assert a[429] >= BURST - LIMIT, a
    assert b == {404: OTHER}, b  # every request of B gets its own answer
