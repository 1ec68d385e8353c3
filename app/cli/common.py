"""What the `redact` commands share: one-line errors, the settings, and opening the store
and the job queue. Every error is one line on stderr and a non-zero exit."""

from __future__ import annotations

import pathlib
import sys
import urllib.parse
from typing import NoReturn

import click
import peewee

from app.services import Services, job_queue, open_services
from app.settings import ConfigError, Settings
from models import Account, Store, create_tables, open_store
from models.worker.queue import JobQueue


def fail(message: str, code: int = 1) -> NoReturn:
    """`error: ` and `message` as one lower-case line on stderr, and exit `code`. Messages
    of the domain are worded for the API's `detail` (capitalised, sometimes on several
    lines): here they read as the rest of the command's errors."""
    text = " ".join(message.split())
    if text[:1].isupper() and text[1:2].islower():  # "Hold ..." but not "ID ..."
        text = text[0].lower() + text[1:]
    click.echo(f"error: {text}", err=True)
    sys.exit(code)


def load_settings() -> Settings:
    """Settings from the environment, or one line and exit 2."""
    try:
        return Settings.from_env()
    except ConfigError as exc:
        fail(str(exc), 2)


def open_store_or_exit(settings: Settings, *, tables: bool = True) -> Store:
    """Open the store the settings name, created if missing (the commands that start the
    service or put the first data in a store), with its tables created or upgraded unless
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


def existing_store_or_exit(settings: Settings) -> Store:
    """`open_store_or_exit` for the commands that read or change what a store holds: an
    SQLite store must exist already. Run in the wrong directory, or with DATABASE_URL
    unset, such a command says so rather than make an empty store there and answer from
    it."""
    refuse_missing_store(settings)
    return open_store_or_exit(settings)


def sqlite_path(database_url: str) -> pathlib.Path | None:
    """The absolute path of an SQLite store's file (relative URLs are relative to the
    working directory); None for PostgreSQL and in-memory stores."""
    parts = urllib.parse.urlparse(database_url)
    if parts.scheme != "sqlite":
        return None
    path = parts.path[1:]  # as peewee reads it: sqlite:///a.db -> a.db, ////a.db -> /a.db
    if not path or path == ":memory:":
        return None
    return pathlib.Path(path).absolute()


def refuse_missing_store(settings: Settings) -> None:
    """One line and exit 1 if the settings name an SQLite file that does not exist."""
    path = sqlite_path(settings.database_url)
    if path is not None and not path.exists():
        fail(
            f"no store at {path} (DATABASE_URL={settings.masked()['DATABASE_URL']}); run "
            "'redact serve' or 'redact migrate' to create one, or set DATABASE_URL"
        )


def unknown_account(api_key: str) -> NoReturn:
    """The one error of every command given an account the store does not hold."""
    fail(f"no account {api_key!r}")


def account_or_exit(api_key: str) -> None:
    """One line and exit 1 unless the store holds the account."""
    if Account.get_or_none(Account.api_key == api_key) is None:
        unknown_account(api_key)


def open_queue_or_exit(settings: Settings) -> JobQueue:
    """The job queue the settings name, or one line and exit 1."""
    try:
        return job_queue(settings)
    except Exception as exc:
        fail(f"cannot open the job queue {settings.report()['REDACT_QUEUE_URL']}: {exc}")


def services_or_exit(settings: Settings | None = None, store: Store | None = None) -> Services:
    """The services on `store` (or on the store the settings name, which must exist, its
    tables created or upgraded), with the queue and the jobs service; settings from the
    environment unless given."""
    settings = settings or load_settings()
    store = store or existing_store_or_exit(settings)
    try:
        return open_services(settings, store=store)
    except Exception as exc:
        fail(f"cannot open the job queue {settings.report()['REDACT_QUEUE_URL']}: {exc}")


def database_error(settings: Settings, exc: Exception) -> str:
    """The database (password masked) and the first line of what went wrong."""
    reason = str(exc).strip()
    first = reason.splitlines()[0] if reason else type(exc).__name__
    return f"{settings.masked()['DATABASE_URL']}: {first}"
