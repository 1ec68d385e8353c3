"""The `redact` command: serve the API, manage accounts, load transactions.

Every error is one line on stderr and a non-zero exit; nothing half-written is kept.
"""

from __future__ import annotations

import datetime
import json
import re
import secrets
import sys

import click
import peewee

from models import PRODUCTS, Account, InvalidRecord, create_tables, database, load_records

from . import logs
from .settings import ConfigError, Settings

API_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def fail(message: str, code: int = 1):
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def open_store() -> Settings:
    """Settings from the environment and an open database with its tables."""
    from models import open_database

    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        fail(str(exc), 2)
    try:
        open_database(settings.database_url, subject_key=settings.subject_key_bytes)
        create_tables()
    except peewee.PeeweeException as exc:
        fail(f"cannot open the database {settings.masked()['DATABASE_URL']}: "
             f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}")
    return settings


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

    from .demo import curl_line, seed_demo

    settings = open_store()
    logs.configure()
    if workers > 1 and settings.ratelimit_storage_uri.startswith("memory"):
        click.echo(f"warning: with memory:// each of the {workers} workers limits on its own; "
                   "set RATELIMIT_STORAGE_URI=redis://... to share the limit", err=True)
    if demo:
        seed_demo(datetime.datetime.now(datetime.UTC))
        click.echo(f"Demo account ready. Redact a record with:\n  "
                   f"{curl_line(f'http://{host}:{port}')}")
    database.close()
    uvicorn.run("app.asgi:app", host=host, port=port, workers=workers,
                log_level="warning", access_log=False)


@main.group()
def accounts():
    """Manage API accounts."""


@accounts.command("create")
@click.option("--api-key", help="Default: generated.")
@click.option("--api-secret", help="Default: generated.")
@click.option("--products", default=",".join(PRODUCTS), show_default=True,
              help="Comma-separated products the account may redact.")
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
        fail(f"--products: unknown product {', '.join(unknown) or '(none given)'}; "
             f"choose from {','.join(PRODUCTS)}")
    open_store()
    try:
        with database.atomic():
            if Account.get_or_none(Account.api_key == api_key):
                fail(f"account {api_key!r} already exists")
            account = Account.register(api_key, api_secret, wanted)
    except peewee.IntegrityError:
        fail(f"account {api_key!r} already exists")
    click.echo(json.dumps({"api_key": api_key, "api_secret": api_secret,
                           "products": account.products.split(",")}))


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
