"""Health endpoints, outside the contracts: no authentication, no rate limit.

`GET /healthz`: the process answers, with the service's version. `GET /readyz`: the store
takes a write transaction, and the limiter's storage and the job queue answer; if one
does not, 503 with a problem body naming it, so that a load balancer stops sending
requests this process cannot serve.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from app.http.problems import HTTPProblem
from app.version import VERSION
from models import Store
from models.migrations import probe_write

CHECK_TIMEOUT_SECONDS = 5


def store_takes_writes(store: Store) -> Callable[[], Awaitable[bool]]:
    """A check of whether a write transaction commits in `store`, through the group commit
    as a redaction's does (answering a read is not enough: a store whose files cannot be
    written answers reads), and the tables are there."""

    async def check() -> bool:
        try:
            return await asyncio.wait_for(
                store.group_commit.run_async(probe_write, None), CHECK_TIMEOUT_SECONDS
            )
        except Exception:  # a timeout included: a store that does not commit is not ready
            return False

    return check


def register(app, checks: dict[str, Callable[[], bool | Awaitable[bool]]]) -> None:
    """Add /healthz and /readyz; `checks` name what readiness needs (a blocking check runs
    in a thread)."""

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "version": VERSION})

    async def readyz(request: Request) -> JSONResponse:
        results = {}
        for name, check in checks.items():
            if inspect.iscoroutinefunction(check):
                healthy = await check()
            else:
                healthy = await run_in_threadpool(check)
            results[name] = "ok" if healthy else "down"
        down = [name for name, result in results.items() if result != "ok"]
        if down:
            raise HTTPProblem(
                503,
                f"Not ready: {', '.join(down)} unreachable",
                {"Retry-After": "5"},
                extensions={"checks": results},
            )
        return JSONResponse({"status": "ready", "checks": results})

    app.add_url_rule("/healthz", "healthz", healthz, methods=["GET"])
    app.add_url_rule("/readyz", "readyz", readyz, methods=["GET"])
