"""`redact accounts`: create accounts and rotate their secrets."""

from __future__ import annotations

import datetime
import json
import re
import secrets

import click
import peewee

from app.cli.common import (
    existing_store_or_exit,
    fail,
    load_settings,
    open_store_or_exit,
    unknown_account,
)
from models import PRODUCTS, Account, database, utcnow

API_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def check_secret(secret: str) -> None:
    if len(secret) < 8 or any(c in secret for c in "\r\n\0"):
        fail("--api-secret must be at least 8 characters on one line")


@click.group()
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
    check_secret(api_secret)
    unknown = [p for p in wanted if p not in PRODUCTS]
    if unknown or not wanted:
        fail(
            f"--products: unknown product {', '.join(unknown) or '(none given)'}; "
            f"choose from {','.join(PRODUCTS)}"
        )
    open_store_or_exit(load_settings())
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
    check_secret(api_secret)
    existing_store_or_exit(load_settings())
    now = utcnow()
    with database.atomic():
        account = Account.rotate_secret(
            api_key, api_secret, datetime.timedelta(seconds=grace_seconds), now
        )
    if account is None:
        unknown_account(api_key)
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
