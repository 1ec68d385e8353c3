"""/healthz and /readyz: outside the contracts, no authentication, no rate limit; readiness
names what is down in a problem body."""

from __future__ import annotations

import pytest

from models import database


def test_healthz_answers_without_credentials_or_limit(make_app, sqlite_url):
    app = make_app(sqlite_url, rate_limit="1/minute")
    with app.test_client() as client:
        for _ in range(5):
            response = client.get("/healthz")
            assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readyz_reports_each_dependency(make_app, database_url, redis_url, tmp_path):
    app = make_app(database_url, ratelimit_storage_uri=redis_url,
                   queue_url=f"sqlite:///{tmp_path / 'q.db'}")
    with app.test_client() as client:
        response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {
        "database": "ok", "limiter": "ok", "queue": "ok"}}


@pytest.mark.parametrize("down", ["limiter", "queue", "database"])
def test_readyz_is_a_503_problem_naming_what_is_down(make_app, tmp_path, down):
    dead_redis = "redis://127.0.0.1:1/0"
    app = make_app(f"sqlite:///{tmp_path / 'redact.db'}",
                   ratelimit_storage_uri=dead_redis if down == "limiter" else "memory://",
                   queue_url=dead_redis if down == "queue" else f"sqlite:///{tmp_path / 'q.db'}")
    if down == "database":  # the file becomes unreadable
        database.close()
        database.obj.close_all()
        (tmp_path / "redact.db").write_bytes(b"not a database" * 100)
    with app.test_client() as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    body = response.json()
    assert {"type", "title", "detail", "instance"} <= set(body)
    assert down in body["detail"]
    assert body["checks"][down] == "down"
    assert [name for name, state in body["checks"].items() if state == "down"] == [down]
