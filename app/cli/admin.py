"""The chores around the service: `migrate` (the release phase), `maintenance`
(PostgreSQL's VACUUM), `config` (the version and the effective configuration)."""

from __future__ import annotations

import json

import click
import peewee

from app.cli.common import existing_store_or_exit, fail, load_settings, open_store_or_exit
from app.cli.progress import Progress
from app.settings import ConfigError, Settings
from app.version import VERSION
from models import database
from models.migrations.sealing import seal_job_subjects, seal_records
from models.worker.maintenance import vacuum_erased


@click.command()
def migrate():
    """Check the configuration, create or upgrade the tables, and seal the personal
    fields of records stored before sealing (the release phase; resumable)."""
    settings = load_settings()
    open_store_or_exit(settings)
    click.echo("tables ready")
    with Progress("sealed", "records", seconds=settings.progress_seconds) as shown:
        records = seal_records(progress=shown.update)
    subjects = seal_job_subjects()
    if records or subjects:
        click.echo(f"sealed {records} records and {subjects} job numbers stored in clear")


@click.command()
def maintenance():
    """PostgreSQL: VACUUM what redaction rewrote, so no old row version keeps a scrubbed
    value or a destroyed key (the worker also does it daily). SQLite needs none."""
    settings = load_settings()
    store = existing_store_or_exit(settings)
    try:
        with Progress("vacuumed", "tables", seconds=settings.progress_seconds) as shown:
            tables = vacuum_erased(database.obj, shown.update)
            store.keystore.vacuum()
    except peewee.PeeweeException as exc:
        fail(f"maintenance failed: {type(exc).__name__}")
    if tables:
        click.echo(f"vacuumed {', '.join(tables)}")
    else:
        click.echo("nothing to do: SQLite zeroes what redaction frees at commit")


@click.command()
def config():
    """Print the service's version and the effective configuration (secrets masked) as
    JSON."""
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        fail(str(exc), 2)
    click.echo(json.dumps({"version": VERSION, **settings.report()}, indent=2))
