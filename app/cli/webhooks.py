"""`redact webhooks`: register, list, show and delete an account's webhook endpoints,
through the same domain functions as the webhooks API (models/webhooks/); prints JSON.
Delivery is the worker's (and `redact serve`'s)."""

from __future__ import annotations

import json

import click

from app.cli.common import account_or_exit, existing_store_or_exit, fail, load_settings
from models import RedactionError, utcnow
from models.webhooks.endpoints import create_webhook, delete_webhook, find_webhook, webhook_resource
from models.webhooks.endpoints import list_webhooks as list_endpoints
from models.webhooks.rows import EVENT_TYPES


def _echo(document: dict) -> None:
    click.echo(json.dumps(document, indent=2))


@click.group()
def webhooks():
    """Register, list, show and delete webhook endpoints (prints JSON)."""


@webhooks.command("create")
@click.option("--account", "api_key", required=True)
@click.option("--url", required=True, help="An http:// or https:// URL events are POSTed to.")
@click.option(
    "--event",
    "events",
    multiple=True,
    type=click.Choice(EVENT_TYPES),
    # Not `required`: click words a missing choice on several lines; the domain's one.
    help="An event to send (repeatable; at least one).",
)
@click.option("--description")
def webhooks_create(api_key, url, events, description):
    """Register an endpoint; prints it with its signing secret, shown this once."""
    existing_store_or_exit(load_settings())
    account_or_exit(api_key)
    try:
        endpoint = create_webhook(
            api_key=api_key, url=url, events=events, description=description, now=utcnow()
        )
    except RedactionError as exc:
        fail(f"{exc}; nothing was registered")
    _echo(webhook_resource(endpoint, secret=True))


@webhooks.command("list")
@click.option("--account", "api_key", required=True)
@click.option("--limit", default=10, show_default=True, type=click.IntRange(1, 100))
def webhooks_list(api_key, limit):
    """The account's endpoints, newest first (without their secrets)."""
    existing_store_or_exit(load_settings())
    account_or_exit(api_key)
    page = list_endpoints(api_key, limit=limit)
    _echo({"data": [webhook_resource(e) for e in page.items], "has_more": page.has_more})


@webhooks.command("show")
@click.argument("webhook_id")
def webhooks_show(webhook_id):
    """One endpoint, of any account, with its delivery counts (not its secret)."""
    existing_store_or_exit(load_settings())
    try:
        _echo(webhook_resource(find_webhook(webhook_id)))
    except RedactionError as exc:
        fail(str(exc))


@webhooks.command("delete")
@click.argument("webhook_id")
def webhooks_delete(webhook_id):
    """Delete an endpoint; its events not yet delivered are dropped. Prints it."""
    existing_store_or_exit(load_settings())
    try:
        endpoint = find_webhook(webhook_id)
        shown = webhook_resource(endpoint)
        delete_webhook(webhook_id, endpoint.account_id)
    except RedactionError as exc:
        fail(str(exc))
    _echo(shown)
