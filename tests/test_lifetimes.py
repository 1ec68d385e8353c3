"""What the service opens, it closes: an app whose lifespan has ended, and a store that
was closed, leave no thread, file descriptor or socket behind in the process."""

from __future__ import annotations

import gc
import os
import threading
import time

import pytest

from app import create_app
from app.settings import Settings
from models import create_tables, open_store
from models.store.state import current_store_kept
from tests.support import REDACT, SUBJECT_KEY, add_account

CYCLES = 50


ANYIO_WORKER = "AnyIO worker thread"


def settled() -> dict:
    """What the process holds once the threads AnyIO ran blocking calls on have ended:
    they end on their own shortly after their event loop does (at most two seconds
    waited)."""
    deadline = time.monotonic() + 2
    while ANYIO_WORKER in (now := held())["threads"] and time.monotonic() < deadline:
        time.sleep(0.02)
    return now


def held() -> dict:
    """The process's threads (by name), and its open descriptors and sockets. Garbage is
    collected first: what earlier tests dropped (and the collector would close at some
    later moment) is not a test's here to count."""
    gc.collect()
    descriptors = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            descriptors.append(os.readlink(f"/proc/self/fd/{fd}"))
        except FileNotFoundError:  # the listing's own descriptor, closed since
            continue
    return {
        "threads": sorted(thread.name for thread in threading.enumerate()),
        "descriptors": len(descriptors),
        "sockets": sum(target.startswith("socket:") for target in descriptors),
    }


@pytest.mark.redis
@pytest.mark.slow
def test_an_app_opened_and_closed_fifty_times_leaves_nothing_open(tmp_path, redis_url):
    """Each app serves a redaction (the credential check's threads, the limiter's Redis
    connection, the group commit's writer) and a readiness check (the store, the limiter,
    the queue on Redis), then ends its lifespan."""
    settings = Settings.from_env(
        {},
        database_url=f"sqlite:///{tmp_path / 'redact.db'}",
        subject_key=SUBJECT_KEY,
        ratelimit_storage_uri=redis_url,
        queue_url=redis_url,
    )
    body = {"id": "0A0000000NOTHERE", "product": "sms"}

    def serve_once() -> None:
        app = create_app(settings)
        with app.test_client() as client:
            answer = client.post(REDACT, json=body, headers=headers)
            assert answer.status_code == 404
            assert client.get("/readyz").status_code == 200

    with current_store_kept():
        with open_store(settings.database_url, subject_key=SUBJECT_KEY.encode()):
            create_tables()
            headers = add_account("acct0001")
        serve_once()  # what a first app loads once per process (modules, metrics)
        before = settled()
        for _ in range(CYCLES):
            serve_once()
        assert settled() == before


def test_a_closed_store_holds_no_thread_or_file(tmp_path):
    """Closing a store stops its group commit's writer and closes its lock file and
    connections; used again, it opens them anew."""
    with current_store_kept():
        before = held()
        store = open_store(f"sqlite:///{tmp_path / 'redact.db'}", subject_key=SUBJECT_KEY.encode())
        with store:
            create_tables()
            assert store.group_commit.run(lambda items: [len(items)] * len(items), None) == 1
            assert "group-commit" in held()["threads"]
        assert settled() == before
        with store:
            assert store.group_commit.run(lambda items: ["again"] * len(items), None) == "again"
        assert settled() == before
