"""The per-account limit (170/second by default) is exact: never more than the limit in
any one-second span, also across a second boundary, where a fixed window would admit
twice the limit. Memory storage limits per process; Redis shares the limit."""

from __future__ import annotations

import asyncio
import threading
import time

import limits
import pytest
import time_machine
from limits.strategies import MovingWindowRateLimiter

from app.http.moving_window import LocalMovingWindow
from tests.support import add_account

URL = "/v1/redact/transaction"
BODY = {"id": "0A0000000NOTHERE", "product": "sms"}
# 0.1 s before a whole second: the boundary at which a fixed window resets.
BEFORE_BOUNDARY = 1_800_000_000.9


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def storage_uri(request):
    if request.param == "memory":
        return "memory://"
    return request.getfixturevalue("redis_url")


def post(client, headers):
    return client.post(URL, json=BODY, headers=headers).status_code


def test_no_more_than_the_limit_in_any_second_across_a_boundary(make_app, sqlite_url, storage_uri):
    app = make_app(sqlite_url, ratelimit_storage_uri=storage_uri)
    headers = add_account("acct0001")
    with app.test_client() as client, time_machine.travel(BEFORE_BOUNDARY, tick=False) as traveller:
        first = [post(client, headers) for _ in range(170)]
        assert 429 not in first
        assert post(client, headers) == 429
        traveller.move_to(BEFORE_BOUNDARY + 0.15)  # next second: a fixed window resets
        assert post(client, headers) == 429
        traveller.move_to(BEFORE_BOUNDARY + 0.95)
        assert post(client, headers) == 429
        traveller.move_to(BEFORE_BOUNDARY + 1.01)  # a full second after the burst
        assert post(client, headers) == 404


def test_limit_is_per_account(make_app, sqlite_url, storage_uri):
    app = make_app(sqlite_url, ratelimit_storage_uri=storage_uri, rate_limit="2/second")
    first, second = add_account("acct0001"), add_account("acct0002")
    with app.test_client() as client, time_machine.travel(BEFORE_BOUNDARY, tick=False):
        assert [post(client, first) for _ in range(3)] == [404, 404, 429]
        assert [post(client, second) for _ in range(3)] == [404, 404, 429]


@pytest.mark.parametrize(
    "storage,statuses",
    [
        # one Redis: two workers admit the limit once between them
        pytest.param(
            "redis",
            [404, 404, 404, 429, 429, 429],
            marks=pytest.mark.redis,
        ),
        # the stated policy of memory://: per process, so N workers admit N x the limit
        ("memory", [404, 404, 404, 404, 404, 404]),
    ],
)
def test_workers_share_the_limit_only_through_redis(
    request, make_app, sqlite_url, storage, statuses
):
    uri = request.getfixturevalue("redis_url") if storage == "redis" else "memory://"
    one = make_app(sqlite_url, ratelimit_storage_uri=uri, rate_limit="3/second")
    two = make_app(sqlite_url, ratelimit_storage_uri=uri, rate_limit="3/second")
    headers = add_account("acct0001")
    with (
        one.test_client() as a,
        two.test_client() as b,
        time_machine.travel(BEFORE_BOUNDARY, tick=False),
    ):
        assert [post(client, headers) for client in (a, b, a, b, a, b)] == statuses


def test_repeated_failed_authentication_is_throttled(make_app, sqlite_url):
    app = make_app(sqlite_url, auth_failure_limit="3/minute")
    good = add_account("acct0001")
    bad = {"Authorization": good["Authorization"][:-4] + "AAAA"}
    with app.test_client() as client, time_machine.travel(BEFORE_BOUNDARY, tick=False) as t:
        assert [post(client, bad) for _ in range(3)] == [401, 401, 401]
        blocked = client.post(URL, json=BODY, headers=bad)
        assert blocked.status_code == 429
        assert 1 <= int(blocked.headers["Retry-After"]) <= 60
        assert blocked.json()["title"] == "Rate Limit Hit"
        # while blocked, even the right secret is not checked from that address
        assert post(client, good) == 429
        t.move_to(BEFORE_BOUNDARY + 61)
        assert post(client, good) == 404


def test_limiter_storage_down_fails_open(make_app, sqlite_url):
    """Stated policy: an unreachable limiter storage admits requests (and logs it, and
    counts it in a metric)."""
    from prometheus_client import REGISTRY

    def admitted_unlimited():
        return REGISTRY.get_sample_value("redact_limiter_storage_unavailable_total") or 0

    app = make_app(sqlite_url, ratelimit_storage_uri="redis://127.0.0.1:1/0", rate_limit="1/second")
    headers = add_account("acct0001")
    before = admitted_unlimited()
    with app.test_client() as client:
        assert [post(client, headers) for _ in range(3)] == [404, 404, 404]
    assert admitted_unlimited() - before >= 3


def test_the_memory_limiter_starts_no_thread(make_app, sqlite_url, monkeypatch):
    """memory:// keeps its window inline (app/http/moving_window.py), where `limits`' own
    memory storage starts a timer thread every 10 ms under load, on the event loop."""
    timers = []
    start = threading.Timer.start
    monkeypatch.setattr(threading.Timer, "start", lambda timer: timers.append(start(timer)))
    app = make_app(sqlite_url, rate_limit="5/second")
    first, second = add_account("acct0001"), add_account("acct0002")
    with app.test_client() as client, time_machine.travel(BEFORE_BOUNDARY, tick=True):
        for _ in range(3):
            assert [post(client, first) for _ in range(6)][-1] == 429
            assert [post(client, second) for _ in range(6)][-1] == 429
            time.sleep(0.02)  # past the 10 ms after which limits' storage starts another
    assert timers == []


def test_the_memory_window_is_exact_and_forgets_idle_keys():
    storage = LocalMovingWindow()
    limiter = MovingWindowRateLimiter(storage)
    limit = limits.parse("5/second")
    with time_machine.travel(BEFORE_BOUNDARY, tick=False) as traveller:
        assert [limiter.hit(limit, "a") for _ in range(6)] == [True] * 5 + [False]
        assert limiter.get_window_stats(limit, "a") == (BEFORE_BOUNDARY + 1, 0)
        for address in range(1000):  # one failure each, from many addresses
            assert limiter.hit(limit, "b", str(address))
        assert len(storage) == 1001
        traveller.shift(0.5)
        assert not limiter.hit(limit, "a")  # its five are in the last second still
        traveller.shift(0.6)
        assert limiter.hit(limit, "a")  # they left it
        assert limiter.get_window_stats(limit, "a") == (BEFORE_BOUNDARY + 2.1, 4)
        assert len(storage) == 1  # the idle addresses were swept with that hit
        assert limiter.hit(limit, "a", cost=4) and not limiter.hit(limit, "a")
        storage.clear(limit.key_for("a"))
        assert limiter.hit(limit, "a", cost=5) and not limiter.hit(limit, "a", cost=6)


def test_the_ratelimit_headers_follow_the_window(make_app, sqlite_url, storage_uri):
    app = make_app(sqlite_url, ratelimit_storage_uri=storage_uri, rate_limit="3/second")
    headers = add_account("acct0001")
    with app.test_client() as client, time_machine.travel(BEFORE_BOUNDARY, tick=False) as t:

        def ratelimit():
            response = client.post(URL, json=BODY, headers=headers)
            return response.status_code, response.headers["RateLimit"]

        assert [ratelimit() for _ in range(4)] == [
            (404, '"account";r=2;t=1'),
            (404, '"account";r=1;t=1'),
            (404, '"account";r=0;t=1'),
            (429, '"account";r=0;t=1'),
        ]
        t.shift(0.5)
        assert ratelimit() == (429, '"account";r=0;t=1')
        t.shift(0.51)  # the three have left the window; this one is in it alone
        assert ratelimit() == (404, '"account";r=2;t=1')


@pytest.mark.redis
def test_an_account_request_is_one_round_trip_to_redis(make_app, sqlite_url, redis_url):
    """The account's count and the window its headers report come from one script call
    (app/http/redis_window.py), where `limits` makes two."""
    import redis

    app = make_app(sqlite_url, ratelimit_storage_uri=redis_url, rate_limit="50/second")
    headers = add_account("acct0001")
    window = f"LIMITS:{limits.parse('50/second').key_for('account', 'acct0001')}"

    def scripts_run(server) -> int:
        stats = server.info("commandstats")
        return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("eval", "evalsha"))

    with app.test_client() as client, redis.Redis.from_url(redis_url) as server:
        assert post(client, headers) == 404  # authenticates, loads the script
        before = scripts_run(server)
        assert [post(client, headers) for _ in range(10)] == [404] * 10
        assert scripts_run(server) - before == 10
        assert server.llen(window) == 11  # where limits keeps the same window


@pytest.mark.redis
def test_requests_that_arrive_together_are_counted_in_one_script_call(redis_url):
    """The window counts, in one call, every request the event loop has at hand, each in
    the order it came and exactly, as if each had made its own call."""
    import redis
    import redis.asyncio

    from app.http.redis_window import RedisMovingWindow

    limit = limits.parse("5/second")
    accounts = [name for name in ("a", "b", "c") for _ in range(8)]  # 8 each, interleaved
    server = redis.Redis.from_url(redis_url)

    def scripts_run() -> int:
        stats = server.info("commandstats")
        return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("eval", "evalsha"))

    async def burst() -> tuple[list, int, tuple, int]:
        client = redis.asyncio.Redis.from_url(redis_url)
        window = RedisMovingWindow(client)
        try:
            await window.hit(limit, "warm")  # Redis learns the script
            before = scripts_run()
            together = await asyncio.gather(*(window.hit(limit, name) for name in accounts))
            between = scripts_run()
            alone = await window.hit(limit, "d")  # by itself: a batch of one
            return together, between - before, alone, scripts_run() - between
        finally:
            await client.aclose()

    with server:
        together, calls, alone, calls_alone = asyncio.run(burst())
        assert (calls, calls_alone) == (1, 1)
        for name in "abc":
            mine = [
                (a, room)
                for who, (a, _, room) in zip(accounts, together, strict=True)
                if who == name
            ]
            assert (
                mine == [(True, 4), (True, 3), (True, 2), (True, 1), (True, 0)] + [(False, 0)] * 3
            )
            assert server.llen(f"LIMITS:{limit.key_for(name)}") == 5
    assert (alone[0], alone[2]) == (True, 4)
