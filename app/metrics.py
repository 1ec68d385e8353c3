"""Prometheus metrics at `GET /metrics` (outside the contracts).

Counters and histograms are kept per process; with several workers they are written to
PROMETHEUS_MULTIPROC_DIR, which `redact serve --workers N` sets up, and a scrape of
any worker reports the sum of all (prometheus-client's multiprocess mode). What lives in
the database or the queue (jobs by status, records redacted by jobs, queue depth, the
retention backlog, the webhook outbox, the erasure log's unsigned entries) is read at
scrape time, so it is right across hosts too (each host reports the same figures).

The endpoint answers only with `Authorization: Bearer <REDACT_METRICS_TOKEN>`; without a
configured token it is off (404), so per-account figures are never public.
"""

from __future__ import annotations

import hmac
import logging
import os
from typing import Any

# prometheus-client picks multiprocess mode at import when PROMETHEUS_MULTIPROC_DIR is
# set, and then needs the directory: any process of the service may be first (release,
# CLI, worker), so the one that is creates it.
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

import peewee
from peewee import fn
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from starlette.requests import Request
from starlette.responses import Response

from app.http.problems import HTTPProblem
from models import PRODUCTS, database
from models.erasure.policies import backlog, retention_lag
from models.jobs.job import STATUSES, RedactionJob
from models.proof.heads import unsigned_since
from models.webhooks.outbox import undelivered

log = logging.getLogger("redact.metrics")

REQUESTS = Counter(
    "redact_http_requests", "HTTP requests by operation and status", ["operation", "status"]
)
LATENCY = Histogram(
    "redact_http_request_duration_seconds",
    "HTTP request latency",
    ["operation"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
COMMIT_BATCH = Histogram(
    "redact_commit_batch_size",
    "Writes (redactions, stored batches) committed together by the group commit",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 1024),
)
COMMIT_PAGES = Histogram(
    "redact_commit_pages",
    "Pages a group commit wrote back (SQLite: counted from its rollback journal)",
    buckets=(4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096),
)
_LOCK_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)
COMMIT_HELD = Histogram(
    "redact_commit_held_seconds",
    "Time a group commit held the store's write lock (statements and commit)",
    buckets=_LOCK_SECONDS,
)
COMMIT_WAITED = Histogram(
    "redact_commit_lock_wait_seconds",
    "Time a group commit waited for another process's batch to release the write lock",
    buckets=_LOCK_SECONDS,
)
REDACTIONS = Counter("redact_redactions", "Records redacted through the Redact API", ["product"])
RECORDS_STORED = Counter("redact_records_stored", "Records stored through the records API")
RATE_LIMITED = Counter(
    "redact_rate_limited_requests", "Requests refused by an account's rate limit", ["api_key"]
)
LIMITER_UNAVAILABLE = Counter(
    "redact_limiter_storage_unavailable",
    "Requests admitted without a limit because the limiter's storage did not answer (fail-open)",
)
AUTH_FAILURES = Counter(
    "redact_authentication_failures",
    "Requests refused for their credentials: unauthorized (401), or "
    "throttled after repeated failures from their address (429)",
    ["reason"],
)


def observe_commit(commit) -> None:
    """Called by the group commit's writer with each batch (models/store/group_commit.py)."""
    COMMIT_BATCH.observe(commit.size)
    COMMIT_HELD.observe(commit.held)
    COMMIT_WAITED.observe(commit.waited)
    if commit.pages is not None:
        COMMIT_PAGES.observe(commit.pages)


def observe_request(operation: str | None, status: int, seconds: float) -> None:
    operation = operation or "unrouted"
    REQUESTS.labels(operation, str(status)).inc()
    if status == 401:  # missing, malformed or wrong credentials, whichever layer said so
        AUTH_FAILURES.labels("unauthorized").inc()
    LATENCY.labels(operation).observe(seconds)


class StoreCollector:
    """What the database and the queue know, read at each scrape. A store that does not
    answer is reported (`redact_store_up` 0) rather than failing the scrape, so that the
    process's own figures (the 503s it answers meanwhile) still reach Prometheus."""

    def __init__(self, queue, min_age_seconds: int, clock):
        self.queue = queue
        self.min_age_seconds = min_age_seconds
        self.clock = clock

    def collect(self):
        up = GaugeMetricFamily(
            "redact_store_up", "Whether the store answered this scrape's queries (1) or not (0)"
        )
        try:
            with database.connection_context():
                figures = list(self._store_figures(self.clock()))
            up.add_metric([], 1)
        except (peewee.PeeweeException, OSError) as exc:  # by its type: a message may quote values
            log.warning("the store did not answer the metrics scrape: %s", type(exc).__name__)
            figures = []
            up.add_metric([], 0)
        yield up
        yield from figures
        depth = GaugeMetricFamily("redact_job_queue_depth", "Tasks waiting in the job queue")
        try:
            depth.add_metric([], self.queue.depth())
            yield depth
        except Exception:  # the queue is down: /readyz says so; the rest still reports
            pass

    def _store_figures(self, now):
        jobs = GaugeMetricFamily("redact_jobs", "Redaction jobs by status", labels=["status"])
        records = CounterMetricFamily("redact_job_records_redacted", "Records redacted by jobs")
        rows: list[Any] = list(
            RedactionJob.select(RedactionJob.status, fn.COUNT(RedactionJob.seq))
            .group_by(RedactionJob.status)
            .tuples()
        )
        counts: dict[str, int] = dict(rows)
        for status in STATUSES:
            jobs.add_metric([status], counts.get(status, 0))
        records.add_metric([], RedactionJob.select(fn.SUM(RedactionJob.redacted)).scalar() or 0)
        yield jobs
        yield records
        yield from self._retention(now)
        outbox = undelivered(now)
        yield _gauge(
            "redact_webhook_backlog", "Webhook events waiting to be delivered", outbox.events
        )
        yield _gauge(
            "redact_webhook_backlog_age_seconds",
            "How long the oldest webhook event waiting to be delivered has waited (0: none)",
            outbox.waited,
        )
        since = unsigned_since()
        yield _gauge(
            "redact_tree_head_lag_seconds",
            "How long the oldest erasure-log entry that no signed tree head covers has "
            "waited (0: every log is signed to its end)",
            0.0 if since is None else max((now - since).total_seconds(), 0.0),
        )

    def _retention(self, now):
        waiting = backlog(now, self.min_age_seconds)
        lag = retention_lag(now, self.min_age_seconds)
        due = GaugeMetricFamily(
            "redact_retention_backlog",
            "Records past their retention policy and not yet redacted (held ones included)",
            labels=["product"],
        )
        held = GaugeMetricFamily(
            "redact_retention_held",
            "Of the retention backlog, records a legal hold keeps",
            labels=["product"],
        )
        late = GaugeMetricFamily(
            "redact_retention_lag_seconds",
            "How long the record past its retention that no hold keeps and that has waited "
            "longest has been due (0: none waits)",
            labels=["product"],
        )
        for product in PRODUCTS:
            found = [b for (_, p), b in waiting.items() if p == product]
            due.add_metric([product], sum(b.due for b in found))
            held.add_metric([product], sum(b.held for b in found))
            late.add_metric([product], lag.get(product, 0.0))
        yield due
        yield held
        yield late


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation)
    family.add_metric([], value)
    return family


def register(app, queue, token: str, min_age_seconds: int, clock) -> None:
    store = StoreCollector(queue, min_age_seconds, clock)

    def metrics(request: Request) -> Response:
        # A plain function: Starlette runs it in a thread, as the scrape reads the database.
        if not token:
            raise HTTPProblem(404, "Metrics are off: set REDACT_METRICS_TOKEN to serve them")
        offered = request.headers.get("Authorization", "")
        if not hmac.compare_digest(offered.encode(), f"Bearer {token}".encode()):
            raise HTTPProblem(
                401,
                "Metrics need the bearer token REDACT_METRICS_TOKEN",
                {"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
        if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        else:
            registry = CollectorRegistry()
            registry.register(_ProcessMetrics())
        registry.register(store)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    app.add_url_rule("/metrics", "metrics", metrics, methods=["GET"])


class _ProcessMetrics:
    """This process's own metrics (single-process mode)."""

    def collect(self):
        yield from REGISTRY.collect()
