"""An open-loop paced client for `POST /v1/redact/transaction`, lean enough that its own
cost stays small beside the service's latency.

Request i is written at t0 + i/rate whatever the earlier ones are doing, on an idle
keep-alive connection (a new one is opened when none is idle, and that time is counted),
and its latency runs from that scheduled time to the last byte of its response, so
queueing in the service and lateness in the client are both counted. Each request's
bytes are encoded before the clock starts; a response is read by its status line and
Content-Length (chunked bodies are read too). httpx, which the rest of the benchmarks use,
spent ~1 ms of the client's CPU a request here, which at p99 was most of a 5 ms target.

The event loop's timers wake up to 1 ms late (epoll counts whole milliseconds), so each
request sleeps until 1.2 ms before its time and then yields to the loop, without sleeping,
until its time has come: that last stretch costs the client some CPU, not precision.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import dataclasses
import json
import statistics
import time
import urllib.parse

SPIN_S = 0.0012


@dataclasses.dataclass
class PacedResult:
    sent: int
    seconds: float
    outcomes: dict[str, int]  # by status code or exception name
    p50_ms: float
    p99_ms: float
    max_ms: float
    late_p99_ms: float  # how late the client wrote a request, at p99

    @classmethod
    def of(cls, latencies: list[float], lateness: list[float], outcomes: list[str], seconds):
        """The figures of a paced run: each request's latency and lateness (seconds) and
        its outcome, over `seconds`."""
        ms = sorted(latency * 1000 for latency in latencies)
        cuts = statistics.quantiles(ms, n=100, method="inclusive")
        late = sorted(x * 1000 for x in lateness)
        return cls(
            sent=len(ms),
            seconds=seconds,
            outcomes=dict(collections.Counter(outcomes)),
            p50_ms=cuts[49],
            p99_ms=cuts[98],
            max_ms=ms[-1],
            late_p99_ms=statistics.quantiles(late, n=100, method="inclusive")[98],
        )

    @property
    def rate(self) -> float:
        return self.sent / self.seconds

    @property
    def errors(self) -> int:
        return sum(n for outcome, n in self.outcomes.items() if not outcome.startswith("2"))

    @property
    def successes(self) -> int:
        return self.sent - self.errors


class Connections:
    """Idle keep-alive connections to one host, opened on demand."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.idle: collections.deque = collections.deque()
        self.opened: list[asyncio.StreamWriter] = []

    async def take(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.idle:
            return self.idle.popleft()  # the oldest: every connection stays in use
        reader, writer = await asyncio.open_connection(self.host, self.port)
        self.opened.append(writer)
        return reader, writer

    def give_back(self, pair: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        self.idle.append(pair)

    def close(self) -> None:
        for writer in self.opened:
            writer.close()


async def read_response(reader: asyncio.StreamReader) -> tuple[str, bool]:
    """Read one response: its status code, and whether the server closes the connection."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    version, status = lines[0].split()[:2]
    if not version.startswith("HTTP/1."):
        raise ValueError(f"not an HTTP response: {lines[0]!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip().lower()
    if headers.get("transfer-encoding") == "chunked":
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            await reader.readexactly(size + 2)
        await reader.readuntil(b"\r\n")
    elif int(headers.get("content-length", 0)):
        await reader.readexactly(int(headers["content-length"]))
    return status, headers.get("connection") == "close"


def encode(url: str, auth: tuple[str, str], body: dict) -> bytes:
    parts = urllib.parse.urlsplit(url)
    payload = json.dumps(body).encode()
    credentials = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    head = (
        f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Authorization: Basic {credentials}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


async def send_paced(url: str, auth: tuple[str, str], ids: list[str], rate: float) -> PacedResult:
    parts = urllib.parse.urlsplit(url)
    pool = Connections(parts.hostname or "127.0.0.1", parts.port or 80)
    requests = [
        encode(url, auth, {"id": record, "product": "sms", "type": "outbound"}) for record in ids
    ]
    loop = asyncio.get_running_loop()

    async def one(request: bytes, scheduled: float) -> tuple[float, float, str]:
        late = time.perf_counter() - scheduled
        try:
            reader, writer = await pool.take()
            writer.write(request)
            outcome, closes = await read_response(reader)
            if closes:
                writer.close()
            else:
                pool.give_back((reader, writer))
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            outcome = type(exc).__name__
        return time.perf_counter() - scheduled, late, outcome

    for _ in range(8):  # a few connections open before the clock starts
        pool.give_back(await pool.take())
    t0 = time.perf_counter() + 0.05
    tasks = []
    try:
        for i, request in enumerate(requests):
            scheduled = t0 + i / rate
            await asyncio.sleep(max(0.0, scheduled - SPIN_S - time.perf_counter()))
            while time.perf_counter() < scheduled:
                await asyncio.sleep(0)
            tasks.append(loop.create_task(one(request, scheduled)))
        outcomes = await asyncio.gather(*tasks)
    finally:
        pool.close()
    elapsed = time.perf_counter() - t0
    latencies, late, results = zip(*outcomes, strict=True)
    return PacedResult.of(list(latencies), list(late), list(results), elapsed)
