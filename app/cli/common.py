"""What the `redact` commands share: one-line errors, the settings, and opening the store
and the job queue. Every error is one line on stderr and a non-zero exit."""

from __future__ import annotations

import sys
from typing import NoReturn

import click
import peewee

from app.services import Services, job_queue, open_services
from app.settings import ConfigError, Settings
from models import Account, Store, create_tables, open_store
from models.worker.queue import JobQueue


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def load_settings() -> Settings:
    """Settings from the environment, or one line and exit 2."""
    try:
        return Settings.from_env()
    except ConfigError as exc:
        fail(str(exc), 2)


def open_store_or_exit(settings: Settings, *, tables: bool = True) -> Store:
    """Open the store the settings name, with its tables created or upgraded unless
    `tables` is false; one line and exit 1 if it cannot be."""
    try:
        store = open_store(
            settings.database_url,
            **settings.store_options(),
        )
        if tables:
            create_tables()
    except (peewee.PeeweeException, OSError, ValueError) as exc:
        # OSError, ValueError: e.g. the SQLite key file cannot be written
        fail(f"cannot open the database {database_error(settings, exc)}")
    return store


def account_or_exit(api_key: str) -> None:
    """One line and exit 1 unless the store holds the account."""
    if Account.get_or_none(Account.api_key == api_key) is None:
        fail(f"no account {api_key!r}")


def open_queue_or_exit(settings: Settings) -> JobQueue:
    """The job queue the settings name, or one line and exit 1."""
    try:
        return job_queue(settings)
    except Exception as exc:
        fail(f"cannot open the job queue {settings.report()['REDACT_QUEUE_URL']}: {exc}")


def services_or_exit(settings: Settings | None = None, store: Store | None = None) -> Services:
    """The services on `store` (or on the store the settings name, its tables created or
    upgraded), with the queue and the jobs service; settings from the environment unless
    given."""
    settings = settings or load_settings()
    store = store or open_store_or_exit(settings)
    try:
        return open_services(settings, store=store)
    except Exception as exc:
        fail(f"cannot open the job queue {settings.report()['REDACT_QUEUE_URL']}: {exc}")


def database_error(settings: Settings, exc: Exception) -> str:
    """The database (password masked) and the first line of what went wrong."""
    reason = str(exc).strip()
    first = reason.splitlines()[0] if reason else type(exc).__name__
    return f"{settings.masked()['DATABASE_URL']}: {first}"
