"""Fixtures: a real app per test on a real database file (or PostgreSQL), driven through
Connexion's test client, with a controllable clock."""

from __future__ import annotations

import base64
import datetime
import json
import os
import socket

import pytest

from app import create_app
from app.settings import Settings
from models import MODELS, Account, database, load_records

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
IN_CI = os.environ.get("CI", "").lower() == "true"

START = datetime.datetime(2026, 11, 1, 12, 0, tzinfo=datetime.UTC)
PASSWORD = "s3cret-Pa55"
SUBJECT_KEY = "test-subject-key-0123456789"


class Clock:
    """The app's notion of now, moved by tests."""

    def __init__(self, now: datetime.datetime = START):
        self.now = now

    def __call__(self) -> datetime.datetime:
        return self.now

    def advance(self, **delta) -> None:
        self.now += datetime.timedelta(**delta)


def _reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Services the tests depend on must run in CI; locally a missing one skips."""
    if _reachable(host, port):
        return
    if IN_CI:
        pytest.fail(f"{name} at {host}:{port} is not reachable, and CI must test against it")
    pytest.skip(f"{name} at {host}:{port} is not running")


def wait_until_serving(server, base_url: str, timeout: float = 60) -> None:
    """Wait until the server process `server` (a Popen) answers GET /healthz at
    `base_url`."""
    import time

    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{base_url}/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert server.poll() is None and time.monotonic() < deadline, "no server"
        time.sleep(0.2)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'redact.db'}"
    require_service("PostgreSQL", "127.0.0.1", 5432)
    return POSTGRES_URL


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'redact.db'}"


@pytest.fixture
def redis_url():
    require_service("Redis", "127.0.0.1", 6379)
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    return REDIS_URL


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def make_app(clock):
    """Build an app on `database_url` with empty tables; keyword arguments are settings."""
    built = []

    def make(database_url: str, **overrides):
        overrides.setdefault("subject_key", SUBJECT_KEY)
        settings = Settings.from_env({}, database_url=database_url, **overrides)
        app = create_app(settings, clock=clock)
        with database.connection_context():
            database.drop_tables(MODELS, safe=True)
            database.create_tables(MODELS)
        built.append(app)
        return app

    yield make
    if built and not database.is_closed():
        database.close()
    if built:
        database.obj.close_all()


@pytest.fixture
def app(make_app, database_url):
    return make_app(database_url)


@pytest.fixture
def client(app):
    with app.test_client() as test_client:
        yield test_client


def basic(api_key: str, secret: str = PASSWORD) -> dict:
    token = base64.b64encode(f"{api_key}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture
def account(app):
    """An account provisioned for every product; returns its auth headers."""
    with database.connection_context():
        Account.register("acct0001", PASSWORD)
    return basic("acct0001")


def add_account(api_key: str, products=None) -> dict:
    with database.connection_context():
        if products is None:
            Account.register(api_key, PASSWORD)
        else:
            Account.register(api_key, PASSWORD, products)
    return basic(api_key)


def add_records(*records: dict) -> int:
    with database.connection_context():
        return load_records(json.dumps(r) for r in records)


def record(
    id: str,
    *,
    api_key="acct0001",
    product="sms",
    age=datetime.timedelta(hours=2),
    now=START,
    **fields,
) -> dict:
    """A load-file record `age` older than `now`."""
    data = {"id": id, "api_key": api_key, "product": product, "created_at": (now - age).isoformat()}
    data.update({"from": "447700900001", "to": "447700900002"})
    if product in ("sms", "messages"):
        data["text"] = "hello there"
    data.update(fields)
    return data
