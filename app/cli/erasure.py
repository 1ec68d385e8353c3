"""`redact keys rotate` and `redact keys generate-kek` (the key store's key-encryption
keys), and `redact suppressions` (numbers an account refuses records about)."""

from __future__ import annotations

import datetime
import json
import os
import socket

import click

from app.cli.common import account_or_exit, existing_store_or_exit, fail, load_settings
from app.cli.progress import Progress
from app.cli.proof import keys
from models import RedactionError, utcnow
from models.erasure.suppression import (
    find_suppression,
    lift,
    list_suppressions,
    suppress,
    suppression_resource,
)
from models.store.base import database
from models.store.kek import generate_kek
from models.store.rotation import rotate


def _echo(document: dict) -> None:
    click.echo(json.dumps(document, indent=2))


def _trace_id(command: str) -> str:
    return f"cli:{command}:{socket.gethostname()}:{os.getpid()}"


@keys.command("generate-kek")
def keys_generate_kek():
    """Print a new key-encryption key (64 hex digits) for REDACT_KEK."""
    click.echo(generate_kek())


@keys.command("rotate")
def keys_rotate():
    """Re-wrap every data key under a new key-encryption key, then destroy the KEKs retired
    more than REDACT_KEK_RETAIN_DAYS ago. Resumable: run it again if it stops."""
    settings = load_settings()
    store = existing_store_or_exit(settings)
    retain = datetime.timedelta(days=settings.kek_retain_days)
    with Progress("re-wrapped", "keys", seconds=settings.progress_seconds) as shown:
        rotation = rotate(store.keystore, utcnow(), retain, shown.update)
    _echo(
        {
            "new_kek": rotation.new_kek,
            "current_kek": store.keystore.keks.current(),
            "rewrapped": rotation.rewrapped,
            "destroyed_keks": rotation.destroyed,
            "retained_keks": rotation.retained,
        }
    )
    if settings.kek and rotation.destroyed:
        click.echo(
            f"remove from REDACT_KEK, no key needs them: {', '.join(rotation.destroyed)}",
            err=True,
        )


@click.group()
def suppressions():
    """Suppress phone numbers: records carrying them are refused (prints JSON)."""


@suppressions.command("add")
@click.option("--account", required=True, help="The account's API key.")
@click.argument("number")
def suppressions_add(account, number):
    """Suppress NUMBER for the account (logged in its erasure log)."""
    existing_store_or_exit(load_settings())
    with database.connection_context():
        account_or_exit(account)
        try:
            row, created = suppress(
                account, number, now=utcnow(), source="cli", trace_id=_trace_id("suppress")
            )
        except RedactionError as exc:
            fail(str(exc))
        _echo({**suppression_resource(row), "created": created})


@suppressions.command("list")
@click.option("--account", required=True, help="The account's API key.")
def suppressions_list(account):
    """The account's suppressions (ids only: numbers are not kept)."""
    existing_store_or_exit(load_settings())
    with database.connection_context():
        account_or_exit(account)
        rows: list[dict] = []
        after = None
        while True:
            page = list_suppressions(account, 100, after)
            rows.extend(suppression_resource(row) for row in page.items)
            if not page.has_more:
                break
            after = rows[-1]["id"]
        _echo({"data": rows})


@suppressions.command("lift")
@click.option("--account", required=True, help="The account's API key.")
@click.argument("suppression")
def suppressions_lift(account, suppression):
    """Lift SUPPRESSION (a `sup_...` id): records carrying the number are taken again."""
    existing_store_or_exit(load_settings())
    with database.connection_context():
        account_or_exit(account)
        try:
            find_suppression(account, suppression)
            position = lift(
                account, suppression, now=utcnow(), source="cli", trace_id=_trace_id("lift")
            )
        except RedactionError as exc:
            fail(str(exc))
        _echo({"id": suppression, "lifted": True, "log_index": position})
