"""`redact jobs`: create, inspect, run and cancel redaction jobs, through the same jobs
service as the API (models/jobs/service.py); prints JSON."""

from __future__ import annotations

import datetime
import json
from contextlib import nullcontext

import click

from app.cli.common import (
    account_or_exit,
    existing_store_or_exit,
    fail,
    load_settings,
    services_or_exit,
)
from app.cli.progress import job_progress
from models.jobs import (
    STATUSES,
    InvalidJobRequest,
    InvalidMove,
    JobError,
    JobNotFound,
    QueueUnavailable,
    RedactionJob,
    TransactionRef,
)
from models.jobs.queries import find_job, job_resource, list_jobs, shown_objects


@click.group()
def jobs():
    """Create, inspect, run and cancel redaction jobs (prints JSON)."""


def _print_job(job: RedactionJob, objects: bool = False) -> None:
    """The job as the API shows it; with `objects`, on one line, the objects streamed (a
    job created from a file may name millions)."""
    resource = job_resource(job)
    if not objects:
        click.echo(json.dumps(resource, indent=2))
        return
    resource.pop("objects")
    click.echo(json.dumps(resource)[:-1] + ', "objects": {"transactions": [', nl=False)
    subjects, separator = [], ""
    for kind, shown in shown_objects(job):
        if kind == "subjects":
            subjects.append(shown)
        else:
            click.echo(separator + json.dumps(shown), nl=False)
            separator = ", "
    click.echo(f'], "subjects": {json.dumps(subjects)}}}}}')


def _transaction_refs(file):
    """TransactionRefs from JSON Lines `{"id", "product", "type"}`, read as needed."""
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
    service = services_or_exit().jobs
    if file is None and not subjects:
        fail("give --transactions FILE and/or --subject NUMBER")
    if run_at is not None and run_at.tzinfo is None:
        run_at = run_at.replace(tzinfo=datetime.UTC)
    account_or_exit(api_key)
    try:
        job, _ = service.create(
            api_key=api_key,
            transactions=_transaction_refs(file or ()),
            subjects=subjects,
            validation_behavior=behavior,
            description=description,
            run_at=run_at,
        )
    except JobError as exc:
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
    existing_store_or_exit(load_settings())
    account_or_exit(api_key)
    page = list_jobs(api_key, limit=limit, status=status)
    data = [job_resource(j) for j in page.items]
    click.echo(json.dumps({"has_more": page.has_more, "data": data}, indent=2))


@jobs.command("show")
@click.argument("job_id")
@click.option("--objects", is_flag=True, help="Include the job's objects.")
def jobs_show(job_id, objects):
    """One job."""
    existing_store_or_exit(load_settings())
    try:
        job = find_job(job_id)
    except JobNotFound:
        fail(f"no redaction job {job_id!r}")
    _print_job(job, objects)


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
    _apply(job_id, "run", wait)


@jobs.command("cancel")
@click.argument("job_id")
def jobs_cancel(job_id):
    """Cancel a ready or failed job, or one whose run waits for premature records."""
    _apply(job_id, "cancel", False)


def _apply(job_id: str, action: str, wait: bool) -> None:
    """An operator's move: taken even while the queue is full (cancelling is how a full
    queue is relieved)."""
    settings = load_settings()
    service = services_or_exit(settings).jobs
    try:
        with job_progress(job_id, settings.progress_seconds) if wait else nullcontext():
            moved = service.apply(service.job(job_id), action, here=wait, admit=False)
    except JobNotFound:
        fail(f"no redaction job {job_id!r}")
    except InvalidMove as exc:
        fail(str(exc))
    except QueueUnavailable as exc:
        if wait:
            fail(f"{exc}; the job waits: a worker's sweep takes it up")
        fail(f"{exc}; the job is left as it was")
    _print_job(moved)
