"""A tree-head request answers within 100 ms while a job of 100,000 records runs, on SQLite
and on PostgreSQL: it never waits behind the batch a job holds the log with (docs/proof.md,
"Signed tree heads").

The job runs on a thread of its own (the queue's task, as a worker runs it), its batches
through the store's group commit. Each request's latency is the service's own measure
(the access log's `duration_ms`, from the edge of the app to its answer), and the batches'
times are the group commit's reports, so the test knows which requests arrived while a
batch held the log (it asks until requests met several batches so); the job is checked to
be still running once the requests are done.

The process settles its heap first, as a served one does once it has built the app
(app/server.py's `settle_heap`): a full pass of the collector holds the interpreter's lock,
and over the test process's heap (the suite's objects) it took 77-97 ms at a quarter of
the suite, longer later; CI saw single requests at 238-321 ms before.
"""

from __future__ import annotations

import gc
import logging
import sys
import threading
import time

import pytest

from app.http.edge import access_log
from app.server import settle_heap
from tests.support import JobsClient, add_account, add_records, record

pytestmark = pytest.mark.slow

HEAD = "/v1/redact/log/tree-head"
RECORDS = 100_000
BOUND_MS = 100
SAMPLES = 6  # batches during which requests arrived


class Batches:
    """The group commit's batches as (start, end) on time.perf_counter's clock."""

    def __init__(self, chained):
        self.chained = chained
        self.spans: list[tuple[float, float]] = []

    def __call__(self, commit):
        end = time.perf_counter()
        self.spans.append((end - commit.held, end))
        if self.chained is not None:
            self.chained(commit)

    def holding(self, moment: float) -> int | None:
        """Which batch held the log at `moment`, if one did."""
        return next(
            (n for n, (start, end) in enumerate(list(self.spans)) if start <= moment <= end), None
        )


class FullPasses:
    """The collector's passes over its oldest generation, as (start, milliseconds)."""

    def __init__(self):
        self.found: list[tuple[float, float]] = []
        self.started = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if info["generation"] != 2:
            return
        now = time.perf_counter()
        if phase == "start":
            self.started = now
        else:
            self.found.append((self.started, round(1000 * (now - self.started))))


class Durations(logging.Handler):
    def __init__(self):
        super().__init__()
        self.found: list[float] = []

    def emit(self, record):
        fields = getattr(record, "fields", {})
        if fields.get("route", "").endswith("/log/tree-head"):
            self.found.append(fields["duration_ms"])


def test_a_tree_head_answers_within_100_ms_while_a_large_job_runs(make_app, database_url, tmp_path):
    app = make_app(database_url, queue_url=f"sqlite:///{tmp_path / 'queue.db'}")
    headers = add_account("acct0001")
    for first in range(0, RECORDS, 20_000):
        add_records(*(record(f"T{n:06d}") for n in range(first, first + 20_000)))
    store = app.services.store
    batches = Batches(store.group_commit.observer)
    store.group_commit.observer = batches
    durations = Durations()
    level = access_log.level
    # The job runs on a thread of this process (a worker is a process of its own in
    # service): switching threads often keeps the interpreter's lock, which they share,
    # from standing in for a wait on the database.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    access_log.addHandler(durations)
    access_log.setLevel(logging.INFO)
    passes = FullPasses()
    settle_heap()
    gc.callbacks.append(passes)
    try:
        with app.test_client() as client:
            jobs = JobsClient(client, headers, app.services.queue)
            job = jobs.ready(subjects=["447700900001"])
            assert client.get(HEAD, headers=headers).status_code == 200  # an auditor's
            jobs.action(job["id"], "run", expect=202)
            worker = threading.Thread(target=jobs.drain, name="job")
            worker.start()
            try:
                while jobs.get(job["id"])["counts"]["redacted"] == 0:
                    time.sleep(0.05)
                measured: list[tuple[float, float, dict]] = []  # arrived, answered in, head
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    durations.found.clear()
                    arrived = time.perf_counter()
                    response = client.get(HEAD, headers=headers)
                    assert response.status_code == 200, response.text
                    (took,) = durations.found
                    measured.append((arrived, took, response.json()))
                    time.sleep(0.1)
                    held = {batches.holding(arrived) for arrived, _, _ in measured} - {None}
                    if len(held) >= SAMPLES:
                        break
                counts = jobs.get(job["id"])
                assert counts["status"] == "redacting" and counts["counts"]["redacted"] < RECORDS
            finally:
                worker.join()
            # Requests arrived while SAMPLES different batches held the log.
            held = {batches.holding(arrived) for arrived, _, _ in measured} - {None}
            assert len(held) >= SAMPLES, (len(measured), len(batches.spans))
            took = [round(took) for _, took, _ in measured]
            held = sorted(round(1000 * (end - start)) for start, end in batches.spans)
            # Every one within the bound (the code before waited for every batch: 119-1,328
            # ms, several requests a run; the memory rate limiter's timer threads and the
            # collector's full passes over an unsettled heap each cost single requests
            # 150-320 ms).
            full = [ms for start, ms in passes.found if start >= measured[0][0]]
            assert max(took) < BOUND_MS, (
                f"took {took} ms; batches held the log {held} ms; full collections {full} ms"
            )
            # Each answer is a head of the log as committed, growing (or kept) as it grows.
            sizes = [answer["tree_size"] for _, _, answer in measured]
            assert sizes == sorted(sizes)
            assert jobs.get(job["id"])["status"] == "succeeded"
            # A head signed on request folds in at most INTEGRATE_ON_REQUEST new entries:
            # the next requests (or the worker's minute) bring it up to the whole log.
            final = [client.get(HEAD, headers=headers).json()["tree_size"] for _ in range(12)]
            assert final[-1] == RECORDS + 1  # and the job's own entry
    finally:
        gc.callbacks.remove(passes)
        gc.unfreeze()
        access_log.removeHandler(durations)
        access_log.setLevel(level)
        sys.setswitchinterval(interval)
