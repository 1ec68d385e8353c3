"""The chores around the service: `migrate` (the release phase), `maintenance`
(PostgreSQL's VACUUM), `config` (the effective configuration)."""

from __future__ import annotations

import json

import click
import peewee

from app.cli.common import fail, load_settings, open_store_or_exit
from app.settings import ConfigError, Settings
from models import database
from models.worker.maintenance import vacuum_erased


@click.command()
def migrate():
    """Check the configuration and create or upgrade the tables (the release phase)."""
    open_store_or_exit(load_settings())
    click.echo("tables ready")


@click.command()
def maintenance():
    """PostgreSQL: VACUUM what redaction rewrote, so no old row version keeps a scrubbed
    value (the worker also does it daily). SQLite needs none."""
    open_store_or_exit(load_settings())
    try:
        tables = vacuum_erased(database.obj)
    except peewee.PeeweeException as exc:
        fail(f"maintenance failed: {type(exc).__name__}")
    if tables:
        click.echo(f"vacuumed {', '.join(tables)}")
    else:
        click.echo("nothing to do: SQLite zeroes what redaction frees at commit")


@click.command()
def config():
    """Print the effective configuration (secrets masked) as JSON."""
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        fail(str(exc), 2)
    click.echo(json.dumps(settings.report(), indent=2))
