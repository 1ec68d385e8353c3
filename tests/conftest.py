"""Fixtures (the helpers they use are in support.py). A real app per test on a real
database file (or PostgreSQL), driven through Connexion's test client, with a clock the
test moves:

- `database_url`: an SQLite file, then PostgreSQL (that param is marked `postgres`);
  `sqlite_url`: the SQLite file only. `redis_url`: the machine's Redis, flushed.
- `clock`: the app's now (support.Clock), START unless moved.
- `make_app(url, **settings)`: an app on `url` with empty tables; `app` and `client` are
  one on `database_url`; `account` provisions acct0001 on it and gives its headers.
- `env`: the environment a `redact` command needs (an SQLite file and the subject key),
  for support.cli (in this process) and support.redact (a process).
- `private_postgres`, `private_redis`: servers of the test's own, to stop and start.

Markers (pyproject.toml): a test that reaches PostgreSQL, Redis, root or a browser says so
(`postgres`, `redis`, `root`, `browser`), and one that runs processes or takes seconds is
`slow`; the fixtures below fail a test that uses them without its marker, so that the
fast set (`-m "not slow and not postgres and not redis and not root and not browser"`)
never needs those.
"""

from __future__ import annotations

import pytest

from app import create_app
from app.settings import Settings
from models import MODELS, database
from models.store.keystore import KEY_MODELS
from tests.support import (
    POSTGRES_URL,
    REDIS_URL,
    SIGNING_KEY,
    SUBJECT_KEY,
    TEST_KEK,
    Clock,
    JobsClient,
    PrivatePostgres,
    PrivateRedis,
    add_account,
    postgres_keystore,
    require_marker,
    require_service,
)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'redact.db'}"
    require_service("PostgreSQL", "127.0.0.1", 5432)
    return POSTGRES_URL


@pytest.fixture
def jobs_app(make_app, database_url, tmp_path):
    """An app whose job queue is an SQLite file of its own."""
    return make_app(database_url, queue_url=f"sqlite:///{tmp_path / 'queue.db'}")


@pytest.fixture
def jobs(jobs_app):
    """The jobs API of `jobs_app` for account acct0001 (a JobsClient)."""
    headers = add_account("acct0001")
    with jobs_app.test_client() as client:
        yield JobsClient(client, headers, jobs_app.services.queue)


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'redact.db'}"


@pytest.fixture
def redis_url(request):
    """The machine's Redis (database 15), emptied."""
    require_marker(request, "redis", "Redis")
    require_service("Redis", "127.0.0.1", 6379)
    import redis

    with redis.Redis.from_url(REDIS_URL) as client:
        client.flushdb()
    return REDIS_URL


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def make_app(clock):
    """Build an app on `database_url` with empty tables (unless `keep_tables`: the last
    app's, for a restart); keyword arguments are settings.
    The app's store is the current one (the models' proxy points at it) until another app
    is built; each app's services (store, queue) are closed after the test."""
    built = []

    def make(database_url: str, *, keep_tables: bool = False, **overrides):
        overrides.setdefault("subject_key", SUBJECT_KEY)
        if not database_url.startswith("sqlite"):  # SQLite's come from files beside it
            overrides.setdefault("signing_key", SIGNING_KEY)
            overrides.setdefault("keystore_url", postgres_keystore())
            overrides.setdefault("kek", TEST_KEK)
        settings = Settings.from_env({}, database_url=database_url, **overrides)
        app = create_app(settings, clock=clock)
        keystore = app.services.store.keystore
        if not keep_tables:
            with keystore.connected(), keystore.db.bind_ctx(KEY_MODELS):
                keystore.db.drop_tables(KEY_MODELS, safe=True)
        keystore.create_tables()
        with database.connection_context(), database.atomic():  # one commit, one fsync
            if not keep_tables:
                database.drop_tables(MODELS, safe=True)
            database.create_tables(MODELS, safe=True)
        built.append(app)
        return app

    yield make
    for app in built:
        app.services.close()
    built.clear()  # what the apps hold can be collected after the test


@pytest.fixture
def app(make_app, database_url):
    return make_app(database_url)


@pytest.fixture
def client(app):
    with app.test_client() as test_client:
        yield test_client


@pytest.fixture
def account(app):
    """acct0001, provisioned for every product on `app`; returns its auth headers."""
    return add_account("acct0001")


@pytest.fixture
def env(tmp_path):
    """What a `redact` command needs in its environment: a store (an SQLite file) and the
    subject key; support.cli and support.redact add it to the test's environment."""
    return {"DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}", "REDACT_SUBJECT_KEY": SUBJECT_KEY}


@pytest.fixture
def private_postgres(request):
    """A PostgreSQL server of the test's own, started; stop() crashes it, start() brings
    it back."""
    require_marker(request, "postgres", "a PostgreSQL server")
    server = PrivatePostgres()
    server.start()
    yield server
    server.destroy()


@pytest.fixture
def private_redis(request):
    """A Redis server of the test's own, started; stop() kills it (and its data)."""
    require_marker(request, "redis", "a Redis server")
    server = PrivateRedis()
    server.start()
    yield server
    server.stop()
