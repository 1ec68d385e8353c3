"""Running the service: `serve` (everything in one command) and `worker` (scale-out)."""

from __future__ import annotations

import logging
import os
import pathlib
import tempfile
import threading
import time

import click
import peewee
import uvicorn

from app import create_app, logs
from app.cli.common import (
    database_error,
    fail,
    load_settings,
    open_queue_or_exit,
    open_store_or_exit,
    services_or_exit,
)
from app.demo import curl_line, seed_demo
from app.docs import PAGE as DOCS_PAGE
from app.server import PROTOCOL, limit_malloc_arenas, settle_heap
from app.version import VERSION
from app.workers import StartupFailed, Supervisor
from models import create_tables, database, utcnow
from models.erasure.settling import settle_left
from models.jobs import QueueUnavailable

logger = logging.getLogger("redact.cli.serve")

STORE_RETRY_SECONDS = 2


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option("--demo", is_flag=True, help="Add a demo account and records, print a curl line.")
@click.option(
    "--jobs/--no-jobs",
    default=True,
    show_default=True,
    help="Work on redaction jobs in this process too (--no-jobs: `redact worker` processes do).",
)
def serve(host: str, port: int, workers: int, demo: bool, jobs: bool):
    """Run the HTTP service (creating tables if missing)."""
    limit_malloc_arenas()
    logs.configure()
    settings = load_settings()
    logs.event("config", settings=settings.report())
    if workers > 1:
        # The workers are new processes: they sum their metrics through files.
        if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:  # made only when none is given
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="redact-metrics-")
        directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
        for stale in pathlib.Path(directory).glob("*.db"):  # counts of an earlier run
            stale.unlink()
        if settings.ratelimit_storage_uri.startswith("memory"):
            click.echo(
                f"warning: with memory:// each of the {workers} workers limits on its "
                "own; set RATELIMIT_STORAGE_URI=redis://... to share the limit",
                err=True,
            )
    store = open_store_or_exit(settings, tables=False)
    try:
        _prepare_served_store(demo)
        ready = True
    except peewee.PeeweeException as exc:
        ready = False
        # Under an orchestrator, exiting here would be a crash loop: serve instead, say
        # so on /readyz, answer 503 problems, and take the store up when it answers.
        logger.warning(
            "the database is unreachable; serving 503 until it answers",
            extra={"fields": {"database": database_error(settings, exc)}},
        )
        threading.Thread(
            target=_prepare_when_reachable, args=(demo,), name="store-setup", daemon=True
        ).start()
    base = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    click.echo(
        f"redact {VERSION} serving at {base} ({workers} worker{'s' * (workers > 1)}); "
        f"API documentation: {base}{DOCS_PAGE}"
    )
    if demo:
        click.echo(
            f"Demo account {'ready' if ready else 'added once the database answers'}."
            f" Redact a record with:\n  {curl_line(base)}"
        )
    # One command runs everything: the job queue's consumer runs in this process too, on
    # the store this process opened; so does the app when it is served here (one worker).
    # More workers are processes of their own, each opening its store (app/asgi.py).
    services = services_or_exit(settings, store)
    consumer = services.queue.consumer(workers=1) if jobs else None
    if consumer is not None:
        consumer.start()
    try:
        if workers == 1:
            app = create_app(services=services)
            settle_heap()
            uvicorn.run(
                app,
                host=host,
                port=port,
                log_level="warning",
                access_log=False,
                http=PROTOCOL,
            )
        else:  # worker processes that share the connections evenly
            config = uvicorn.Config(
                "app.asgi:app",
                host=host,
                port=port,
                workers=workers,
                log_level="warning",
                access_log=False,
                http=PROTOCOL,
            )
            try:
                Supervisor(config, workers, on_lost=settle_left).run()
            except StartupFailed as exc:
                fail(f"{exc}; its error is above")
    finally:
        if consumer is not None:  # the job a worker thread holds ends before the store
            consumer.stop(graceful=True)
        services.close()


def _prepare_served_store(demo: bool) -> None:
    """Create or upgrade the tables (and seed the demo) in the database `serve` opened
    (opening it again would replace the one the app serves from)."""
    try:
        create_tables()
        if demo:
            seed_demo(utcnow())
    finally:
        database.close()


def _prepare_when_reachable(demo: bool) -> None:
    """Retry the store's set-up until the database answers."""
    while True:
        time.sleep(STORE_RETRY_SECONDS)
        try:
            _prepare_served_store(demo)
        except peewee.PeeweeException:
            continue
        logger.info("the database answers: tables ready, serving")
        return


@click.command()
@click.option(
    "--threads",
    default=2,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Jobs worked on at once.",
)
def worker(threads: int):
    """Run redaction jobs from the queue (scale-out: run one or more beside the web)."""
    logs.configure()
    settings = load_settings()
    open_store_or_exit(settings)
    queue = open_queue_or_exit(settings)
    try:
        queue.sweep()  # take up at once what a stopped worker left
    except QueueUnavailable as exc:
        fail(str(exc))
    database.close()
    logger.info(
        "worker: %d thread(s) on the queue %s", threads, settings.report()["REDACT_QUEUE_URL"]
    )
    consumer = queue.consumer(workers=threads)
    settle_heap()
    consumer.run()
