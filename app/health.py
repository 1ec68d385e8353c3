"""Health endpoints, outside the contracts: no authentication, no rate limit.

`GET /healthz`: the process answers. `GET /readyz`: the database, the limiter's storage
and the job queue answer; if one does not, 503 with a problem body naming it, so that a
load balancer stops sending requests this process cannot serve.
"""

from __future__ import annotations

from typing import Callable

import flask

from models import database

from .problems import HTTPProblem


def database_reachable() -> bool:
    try:
        with database.connection_context():
            database.execute_sql("SELECT 1")
        return True
    except Exception:
        return False


def register(flask_app: flask.Flask, checks: dict[str, Callable[[], bool]]) -> None:
    """Add /healthz and /readyz; `checks` name what readiness needs."""

    @flask_app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @flask_app.get("/readyz")
    def readyz():
        results = {name: ("ok" if check() else "down") for name, check in checks.items()}
        down = [name for name, result in results.items() if result != "ok"]
        if down:
            raise HTTPProblem(503, f"Not ready: {', '.join(down)} unreachable",
                              {"Retry-After": "5"}, extensions={"checks": results})
        return {"status": "ready", "checks": results}
