"""`redact policies`, `redact holds` and `redact retention`: Auto-redact policies, legal
holds and the retention pass, through the same domain functions as the records API
(models/erasure/policies.py, retention.py, holds.py); prints JSON."""

from __future__ import annotations

import json
import os
import socket

import click

from app.cli.common import account_or_exit, existing_store_or_exit, fail, load_settings
from app.cli.progress import Progress
from models import PRODUCTS, RedactionError, utcnow
from models.erasure.audit import operator
from models.erasure.held import STATUSES
from models.erasure.holds import create_hold, find_hold, hold_resource, list_holds, release_hold
from models.erasure.policies import MODES, policies_shown, set_policies
from models.erasure.retention import run_retention


def _echo(document: dict) -> None:
    click.echo(json.dumps(document, indent=2))


@click.group()
def policies():
    """Show and set an account's Auto-redact (retention) policies (prints JSON)."""


def _show_policies(api_key: str, min_age_seconds: int) -> None:
    _echo(policies_shown(api_key, utcnow(), min_age_seconds))


@policies.command("show")
@click.option("--account", "api_key", required=True)
def policies_show(api_key):
    """The account's policy for each product it may redact, with its backlog."""
    settings = load_settings()
    existing_store_or_exit(settings)
    account_or_exit(api_key)
    _show_policies(api_key, settings.min_age_seconds)


@policies.command("set")
@click.option("--account", "api_key", required=True)
@click.option("--product", required=True, type=click.Choice(PRODUCTS))
@click.option("--auto-redact", "mode", required=True, type=click.Choice(MODES))
@click.option("--after-days", type=int, help="With --auto-redact after: the retention in days.")
def policies_set(api_key, product, mode, after_days):
    """Change the account's policy for one product (audited); prints the policies."""
    settings = load_settings()
    existing_store_or_exit(settings)
    account_or_exit(api_key)
    try:
        set_policies(
            api_key,
            {product: {"auto_redact": mode, "after_days": after_days}},
            now=utcnow(),
            actor=operator(),
        )
    except RedactionError as exc:
        fail(f"{exc}; nothing was changed")
    _show_policies(api_key, settings.min_age_seconds)


@click.group()
def holds():
    """Create, list, show and release legal holds (prints JSON)."""


def _transaction(value: str) -> dict:
    """ID or ID:PRODUCT or ID:PRODUCT:TYPE (SMS outbound by default)."""
    parts = value.split(":")
    if len(parts) > 3 or not parts[0]:
        raise click.BadParameter(f"{value!r}: give ID, ID:PRODUCT or ID:PRODUCT:TYPE")
    product = parts[1] if len(parts) > 1 else "sms"
    if product not in PRODUCTS:
        raise click.BadParameter(f"{value!r}: unknown product {product!r}")
    return {"id": parts[0], "product": product, "type": parts[2] if len(parts) > 2 else None}


@holds.command("create")
@click.option("--account", "api_key", required=True)
@click.option("--reason", required=True, help="Why the records are held (a matter, a case).")
@click.option("--subject", "subjects", multiple=True, help="A phone number (repeatable).")
@click.option(
    "--transaction",
    "transactions",
    multiple=True,
    help="A record: ID, ID:PRODUCT or ID:PRODUCT:TYPE (repeatable; product sms by default).",
)
def holds_create(api_key, reason, subjects, transactions):
    """Hold records and every record about numbers; prints the hold."""
    existing_store_or_exit(load_settings())
    account_or_exit(api_key)
    try:
        named = [_transaction(t) for t in transactions]
        hold = create_hold(
            api_key=api_key,
            subjects=subjects,
            transactions=named,
            reason=reason,
            now=utcnow(),
            actor=operator(),
        )
    except click.BadParameter as exc:
        fail(f"--transaction {exc.message}; no hold was created")
    except RedactionError as exc:
        fail(f"{exc}; no hold was created")
    _echo(hold_resource(hold))


@holds.command("list")
@click.option("--account", "api_key", required=True)
@click.option("--status", type=click.Choice(STATUSES))
@click.option("--limit", default=10, show_default=True, type=click.IntRange(1, 100))
def holds_list(api_key, status, limit):
    """The account's holds, newest first."""
    existing_store_or_exit(load_settings())
    account_or_exit(api_key)
    page = list_holds(api_key, limit=limit, status=status)
    _echo({"data": [hold_resource(h) for h in page.items], "has_more": page.has_more})


@holds.command("show")
@click.argument("hold_id")
def holds_show(hold_id):
    """One hold, of any account."""
    existing_store_or_exit(load_settings())
    try:
        _echo(hold_resource(find_hold(hold_id)))
    except RedactionError as exc:
        fail(str(exc))


@holds.command("release")
@click.argument("hold_id")
def holds_release(hold_id):
    """Release a hold (audited): what it held may be redacted again."""
    existing_store_or_exit(load_settings())
    try:
        hold = find_hold(hold_id)
        _echo(hold_resource(release_hold(hold_id, hold.account_id, now=utcnow(), actor=operator())))
    except RedactionError as exc:
        fail(str(exc))


@click.group()
def retention():
    """The Auto-redact retention pass."""


@retention.command("run")
def retention_run():
    """Redact now every record past its retention (the worker does it every minute);
    prints what it did. Interrupted, it loses nothing: run it again to go on."""
    settings = load_settings()
    existing_store_or_exit(settings)
    with Progress("redacted", "records", seconds=settings.progress_seconds) as shown:
        report = run_retention(
            clock=utcnow,
            min_age_seconds=settings.min_age_seconds,
            batch_size=settings.job_batch_size,
            owner=f"{socket.gethostname()}:{os.getpid()}:retention-run",
            lease_seconds=settings.job_lease_seconds,
            progress=shown.update,
        )
    if report is None:
        fail("another worker's retention pass is under way; try again later")
    _echo({"redacted": report.redacted, "held": report.held})
