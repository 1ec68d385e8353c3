"""The `redact` command: serve the API, manage accounts, load transactions.

Every error is one line on stderr and a non-zero exit; nothing half-written is kept.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import pathlib
import re
import secrets
import sys
import tempfile
import threading
import time

import click
import peewee

from models import (
    PRODUCTS,
    Account,
    InvalidRecord,
    create_tables,
    database,
    load_records,
    open_database,
)
from models.job import STATUSES

from . import logs
from .queue import QueueUnavailable
from .settings import ConfigError, Settings

log = logging.getLogger("redact.store")

API_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def fail(message: str, code: int = 1):
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def load_settings() -> Settings:
    """Settings from the environment, or one line and exit 2."""
    try:
        return Settings.from_env()
    except ConfigError as exc:
        fail(str(exc), 2)


def open_store() -> Settings:
    """Settings from the environment and an open database with its tables."""
    settings = load_settings()
    try:
        open_database(settings.database_url, subject_key=settings.subject_key_bytes)
        create_tables()
    except peewee.PeeweeException as exc:
        fail(f"cannot open the database {_database_error(settings, exc)}")
    return settings


def _database_error(settings: Settings, exc: Exception) -> str:
    """The database (password masked) and the first line of what went wrong."""
    reason = str(exc).strip()
    return (
        f"{settings.masked()['DATABASE_URL']}: "
        f"{reason.splitlines()[0] if reason else type(exc).__name__}"
    )


@click.group()
def main():
    """Redact: a self-hostable, Vonage-compatible redaction service."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option("--demo", is_flag=True, help="Add a demo account and records, print a curl line.")
def serve(host: str, port: int, workers: int, demo: bool):
    """Run the HTTP service (creating tables if missing)."""
    import uvicorn

    from .demo import curl_line
    from .server import PROTOCOL, limit_malloc_arenas

    limit_malloc_arenas()
    logs.configure()
    settings = load_settings()
    logs.event("config", settings=settings.report())
    if workers > 1:
        # uvicorn's workers are new processes: they sum their metrics through files, as
        # app/gunicorn_conf.py arranges for gunicorn's.
        directory = os.environ.setdefault(
            "PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="redact-metrics-")
        )
        for stale in pathlib.Path(directory).glob("*.db"):  # counts of an earlier run
            stale.unlink()
        if settings.ratelimit_storage_uri.startswith("memory"):
            click.echo(
                f"warning: with memory:// each of the {workers} workers limits on its "
                "own; set RATELIMIT_STORAGE_URI=redis://... to share the limit",
                err=True,
            )
    try:
        open_database(settings.database_url, subject_key=settings.subject_key_bytes)
    except (OSError, ValueError) as exc:  # e.g. the SQLite key file cannot be written
        fail(f"cannot open the database {_database_error(settings, exc)}")
    try:
        _prepare_served_store(demo)
        ready = True
    except peewee.PeeweeException as exc:
        ready = False
        # Under an orchestrator, exiting here would be a crash loop: serve instead, say
        # so on /readyz, answer 503 problems, and take the store up when it answers.
        log.warning(
            "the database is unreachable; serving 503 until it answers",
            extra={"fields": {"database": _database_error(settings, exc)}},
        )
        threading.Thread(
            target=_prepare_when_reachable, args=(demo,), name="store-setup", daemon=True
        ).start()
    if demo:
        click.echo(
            f"Demo account {'ready' if ready else 'added once the database answers'}."
            f" Redact a record with:\n  {curl_line(f'http://{host}:{port}')}"
        )
    # One command runs everything: the job queue's consumer runs in this process too.
    consumer = _job_queue(settings).consumer(workers=1)
    consumer.start()
    try:
        uvicorn.run(
            "app.asgi:app",
            host=host,
            port=port,
            workers=workers,
            log_level="warning",
            access_log=False,
            http=PROTOCOL,
        )
    finally:
        consumer.stop()


@main.command()
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
    settings = open_store()
    queue = _job_queue(settings)
    try:
        queue.sweep()  # take up at once what a stopped worker left
    except QueueUnavailable as exc:
        fail(str(exc))
    database.close()
    logging.getLogger("redact.jobs").info(
        "worker: %d thread(s) on the queue %s",
        threads,
        Settings(
            queue_url=settings.effective_queue_url,
            database_url=settings.database_url,
            subject_key=settings.subject_key,
        ).masked()["REDACT_QUEUE_URL"],
    )
    queue.consumer(workers=threads).run()


STORE_RETRY_SECONDS = 2


def _prepare_served_store(demo: bool) -> None:
    """Create or upgrade the tables (and seed the demo) in the database `serve` opened
    (opening it again would replace the one the app serves from)."""
    from .demo import seed_demo

    try:
        create_tables()
        if demo:
            seed_demo(datetime.datetime.now(datetime.UTC))
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
        log.info("the database answers: tables ready, serving")
        return


def _job_queue(settings: Settings):
    from .queue import JobQueue

    try:
        return JobQueue(settings)
    except Exception as exc:
        fail(f"cannot open the job queue {settings.effective_queue_url}: {exc}")


@main.group()
def jobs():
    """Create, inspect, run and cancel redaction jobs (prints JSON)."""


def _print_job(job, objects: bool = False) -> None:
    """The job as the API shows it; with `objects`, on one line, the objects streamed (a
    job created from a file may name millions)."""
    from models.job import iter_objects

    from .jobs_api import job_resource

    resource = job_resource(job)
    if not objects:
        click.echo(json.dumps(resource, indent=2))
        return
    resource.pop("objects")
    click.echo(json.dumps(resource)[:-1] + ', "objects": {"transactions": [', nl=False)
    subjects, separator = [], ""
    for item in iter_objects(job):
        shown = item.as_object()
        if "subject" in shown:
            subjects.append(shown["subject"])
        else:
            click.echo(separator + json.dumps(shown["transaction"]), nl=False)
            separator = ", "
    click.echo(f'], "subjects": {json.dumps(subjects)}}}}}')


def _transaction_refs(file):
    """TransactionRefs from JSON Lines `{"id", "product", "type"}`, read as needed."""
    from models.job import InvalidJobRequest, TransactionRef

    for number, line in enumerate(file, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            yield TransactionRef(str(item["id"]), item["product"], item.get("type"))
        except (ValueError, KeyError, TypeError):
            raise InvalidJobRequest(
                f"{file.name} line {number}: not a JSON object with id and product"
            ) from None


@jobs.command("create")
@click.option("--account", "api_key", required=True, help="The account the job acts for.")
@click.option(
    "--transactions",
    "file",
    type=click.File("r", encoding="utf-8"),
    help='JSON Lines of {"id", "product", "type"} (\'-\' for stdin).',
)
@click.option("--subject", "subjects", multiple=True, help="A phone number (repeatable).")
@click.option(
    "--behavior",
    type=click.Choice(["error", "fix"]),
    default="error",
    show_default=True,
    help="validation_behavior",
)
@click.option("--description")
@click.option(
    "--run-at",
    type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S"]),
    help="When the job runs by itself once ready (UTC if no offset).",
)
def jobs_create(api_key, file, subjects, behavior, description, run_at):
    """Create a job and queue its validation; prints the job."""
    from models.job import JobError

    settings = open_store()
    queue = _job_queue(settings)
    if file is None and not subjects:
        fail("give --transactions FILE and/or --subject NUMBER")
    if run_at is not None and run_at.tzinfo is None:
        run_at = run_at.replace(tzinfo=datetime.UTC)
    if Account.get_or_none(Account.api_key == api_key) is None:
        fail(f"no account {api_key!r}")
    try:
        job, _ = queue.create(
            api_key=api_key,
            transactions=_transaction_refs(file or ()),
            subjects=subjects,
            validation_behavior=behavior,
            description=description,
            run_at=run_at,
            now=datetime.datetime.now(datetime.UTC),
            max_unfinished=settings.max_active_jobs,
        )
    except (JobError, QueueUnavailable) as exc:
        fail(f"{exc}; no job was created")
    except UnicodeDecodeError:
        fail(f"{file.name}: not UTF-8 text; no job was created")
    _print_job(job)


@jobs.command("list")
@click.option("--account", "api_key", required=True)
@click.option("--status", type=click.Choice(list(STATUSES)))
@click.option("--limit", default=10, show_default=True, type=click.IntRange(1, 100))
def jobs_list(api_key, status, limit):
    """The account's jobs, newest first."""
    from models.job import list_jobs

    from .jobs_api import job_resource

    open_store()
    page = list_jobs(api_key, limit=limit, status=status)
    click.echo(
        json.dumps(
            {"has_more": page.has_more, "data": [job_resource(j) for j in page.items]}, indent=2
        )
    )


@jobs.command("show")
@click.argument("job_id")
@click.option("--objects", is_flag=True, help="Include the job's objects.")
def jobs_show(job_id, objects):
    """One job."""
    open_store()
    _print_job(_operator_job(job_id), objects)


@jobs.command("run")
@click.argument("job_id")
@click.option(
    "--wait",
    is_flag=True,
    help="Do the work in this process and print the "
    "finished job, instead of leaving it to the workers.",
)
def jobs_run(job_id, wait):
    """Run a ready job (irreversible)."""
    _move_job(job_id, "run", wait)


@jobs.command("cancel")
@click.argument("job_id")
def jobs_cancel(job_id):
    """Cancel a ready or failed job."""
    _move_job(job_id, "cancel", False)


def _operator_job(job_id: str):
    from models.job import RedactionJob

    job = RedactionJob.get_or_none(RedactionJob.id == job_id)
    if job is None:
        fail(f"no redaction job {job_id!r}")
    return job


def _move_job(job_id: str, action: str, wait: bool) -> None:
    from models.job import InvalidMove

    settings = open_store()
    queue = _job_queue(settings)
    try:
        moved = queue.apply(_operator_job(job_id), action, here=wait)
    except InvalidMove as exc:
        fail(str(exc))
    except QueueUnavailable as exc:
        fail(
            f"{exc}; "
            + (
                "the job waits: a worker's sweep takes it up"
                if wait
                else "the job is left as it was"
            )
        )
    _print_job(moved)


@main.command()
def maintenance():
    """PostgreSQL: VACUUM what redaction rewrote, so no old row version keeps a scrubbed
    value (the worker also does it daily). SQLite needs none."""
    from models.maintenance import vacuum_erased

    open_store()
    try:
        tables = vacuum_erased(database.obj)
    except peewee.PeeweeException as exc:
        fail(f"maintenance failed: {type(exc).__name__}")
    if tables:
        click.echo(f"vacuumed {', '.join(tables)}")
    else:
        click.echo("nothing to do: SQLite zeroes what redaction frees at commit")


@main.command()
def config():
    """Print the effective configuration (secrets masked) as JSON."""
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        fail(str(exc), 2)
    click.echo(json.dumps(settings.report(), indent=2))


@main.group()
def accounts():
    """Manage API accounts."""


@accounts.command("create")
@click.option("--api-key", help="Default: generated.")
@click.option("--api-secret", help="Default: generated.")
@click.option(
    "--products",
    default=",".join(PRODUCTS),
    show_default=True,
    help="Comma-separated products the account may redact.",
)
def accounts_create(api_key: str | None, api_secret: str | None, products: str):
    """Create an account and print it as JSON (the only time the secret is shown)."""
    api_key = api_key if api_key is not None else secrets.token_hex(4)
    api_secret = api_secret if api_secret is not None else secrets.token_urlsafe(12)
    wanted = [p.strip() for p in products.split(",") if p.strip()]
    if not API_KEY.match(api_key):
        fail("--api-key must be 1-64 letters, digits, '.', '_' or '-'")
    if len(api_secret) < 8 or any(c in api_secret for c in "\r\n\0"):
        fail("--api-secret must be at least 8 characters on one line")
    unknown = [p for p in wanted if p not in PRODUCTS]
    if unknown or not wanted:
        fail(
            f"--products: unknown product {', '.join(unknown) or '(none given)'}; "
            f"choose from {','.join(PRODUCTS)}"
        )
    open_store()
    try:
        with database.atomic():
            if Account.get_or_none(Account.api_key == api_key):
                fail(f"account {api_key!r} already exists")
            account = Account.register(api_key, api_secret, wanted)
    except peewee.IntegrityError:
        fail(f"account {api_key!r} already exists")
    click.echo(
        json.dumps(
            {"api_key": api_key, "api_secret": api_secret, "products": account.products.split(",")}
        )
    )


@accounts.command("rotate-secret")
@click.option("--api-key", required=True)
@click.option("--api-secret", help="The new secret. Default: generated.")
@click.option(
    "--grace-seconds",
    default=86400,
    show_default=True,
    type=click.IntRange(0),
    help="How long the current secret stays valid beside the new one.",
)
def accounts_rotate_secret(api_key: str, api_secret: str | None, grace_seconds: int):
    """Give an account a new secret without downtime; prints it (the only time it is
    shown) and until when the former one is still accepted."""
    api_secret = api_secret if api_secret is not None else secrets.token_urlsafe(12)
    if len(api_secret) < 8 or any(c in api_secret for c in "\r\n\0"):
        fail("--api-secret must be at least 8 characters on one line")
    open_store()
    now = datetime.datetime.now(datetime.UTC)
    with database.atomic():
        account = Account.rotate_secret(
            api_key, api_secret, datetime.timedelta(seconds=grace_seconds), now
        )
    if account is None:
        fail(f"no account {api_key!r}")
    until = account.previous_secret_until
    click.echo(
        json.dumps(
            {
                "api_key": api_key,
                "api_secret": api_secret,
                "previous_secret_valid_until": until.isoformat() if until else None,
            }
        )
    )


@main.group()
def transactions():
    """Manage the transaction store."""


@transactions.command("load")
@click.argument("file", type=click.File("r", encoding="utf-8"))
def transactions_load(file):
    """Load JSON Lines records from FILE ('-' for stdin), all or nothing."""
    open_store()
    try:
        count = load_records(file)
    except InvalidRecord as exc:
        fail(f"{exc}; nothing was loaded")
    except UnicodeDecodeError:
        fail(f"{file.name}: not UTF-8 text; nothing was loaded")
    click.echo(f"loaded {count} transaction{'s' if count != 1 else ''}")


def run() -> None:
    """Console-script entry point: click's usage errors as one line, like ours."""
    try:
        code = main(standalone_mode=False)
    except click.exceptions.Abort:
        fail("aborted")
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.format_message(), err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        fail(exc.format_message(), exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    run()
