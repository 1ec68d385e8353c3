"""/healthz and /readyz: outside the contracts, no authentication, no rate limit; readiness
names what is down in a problem body."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from models import database
from tests.support import (
    PROBLEM_FIELDS,
    PROJECT_VERSION,
    add_account,
    add_records,
    record,
    unavailable,
)


def test_healthz_answers_without_credentials_or_limit(make_app, sqlite_url):
    app = make_app(sqlite_url, rate_limit="1/minute")
    with app.test_client() as client:
        for _ in range(5):
            response = client.get("/healthz")
            assert response.status_code == 200
            assert response.json() == {"status": "ok", "version": PROJECT_VERSION}


@pytest.mark.redis
def test_readyz_reports_each_dependency(make_app, database_url, redis_url, tmp_path):
    app = make_app(
        database_url, ratelimit_storage_uri=redis_url, queue_url=f"sqlite:///{tmp_path / 'q.db'}"
    )
    with app.test_client() as client:
        response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {"database": "ok", "limiter": "ok", "queue": "ok"},
    }


@pytest.mark.parametrize("down", ["limiter", "queue", "database"])
def test_readyz_is_a_503_problem_naming_what_is_down(make_app, tmp_path, down):
    dead_redis = "redis://127.0.0.1:1/0"
    app = make_app(
        f"sqlite:///{tmp_path / 'redact.db'}",
        ratelimit_storage_uri=dead_redis if down == "limiter" else "memory://",
        queue_url=dead_redis if down == "queue" else f"sqlite:///{tmp_path / 'q.db'}",
    )
    if down == "database":  # the file becomes unreadable
        database.close()
        database.obj.close_all()
        (tmp_path / "redact.db").write_bytes(b"not a database" * 100)
    with app.test_client() as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) >= 1
    body = response.json()
    assert set(body) >= PROBLEM_FIELDS
    assert down in body["detail"]
    assert body["checks"][down] == "down"
    assert [name for name, state in body["checks"].items() if state == "down"] == [down]


@pytest.mark.root
def test_readyz_needs_a_store_that_takes_writes(make_app, tmp_path):
    """SQLite files that can still be read but not written (made immutable): every
    redaction would be a 503, so the store is not ready."""
    if (
        shutil.which("chattr") is None
        or subprocess.run(["chattr", "+i", str(tmp_path)], capture_output=True).returncode != 0
    ):
        unavailable("cannot make files immutable here (chattr +i needs root)")
    subprocess.run(["chattr", "-i", str(tmp_path)], check=True)
    app = make_app(
        f"sqlite:///{tmp_path / 'redact.db'}", queue_url=f"sqlite:///{tmp_path / 'q.db'}"
    )
    headers = add_account("acct0001")
    add_records(record("0A0000000123ABCD1"))
    files = [str(path) for path in tmp_path.glob("redact.db*")]
    with app.test_client() as client:
        assert client.get("/readyz").status_code == 200
        subprocess.run(["chattr", "+i", str(tmp_path), *files], check=True)
        try:
            redaction = client.post(
                "/v1/redact/transaction",
                headers=headers,
                json={"id": "0A0000000123ABCD1", "product": "sms"},
            )
            ready = client.get("/readyz")
        finally:
            subprocess.run(["chattr", "-i", str(tmp_path), *files], check=True)
        assert redaction.status_code == 503
        assert ready.status_code == 503
        assert ready.json()["checks"]["database"] == "down"
        assert "database" in ready.json()["detail"]
        # Writable again: ready, and the redaction goes through.
        assert client.get("/readyz").status_code == 200
        assert (
            client.post(
                "/v1/redact/transaction",
                headers=headers,
                json={"id": "0A0000000123ABCD1", "product": "sms"},
            ).status_code
            == 204
        )
