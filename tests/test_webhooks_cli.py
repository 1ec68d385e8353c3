"""`redact webhooks`: the same rules as the webhooks API, the secret printed once, one-line
errors that register nothing, and hold changes made with `redact holds` written to the
outbox of the endpoints that asked for them."""

from __future__ import annotations

import json

import pytest

from models.webhooks.rows import WebhookEndpoint, WebhookEvent
from tests.support import cli, one_line_error, store_at


@pytest.fixture
def accounts(env):
    for api_key in ("acct0001", "acct0002"):
        cli(env, "accounts", "create", "--api-key", api_key, check=True)
    return env


def create(env, *args: str, account: str = "acct0001") -> dict:
    result = cli(
        env, "webhooks", "create", "--account", account, "--url", "https://example.com/hooks",
        *args, check=True,
    )  # fmt: skip
    return json.loads(result.stdout)


def test_webhooks_create_list_show_delete(accounts):
    created = create(
        accounts, "--event", "hold.created", "--event", "job.failed", "--description", "ops"
    )
    assert created["id"].startswith("whk_") and created["secret"].startswith("whsec_")
    assert created["events"] == ["hold.created", "job.failed"]
    assert created["description"] == "ops"
    other = create(accounts, "--event", "job.succeeded", account="acct0002")

    listed = json.loads(cli(accounts, "webhooks", "list", "--account", "acct0001").stdout)
    assert [e["id"] for e in listed["data"]] == [created["id"]] and not listed["has_more"]
    assert "secret" not in listed["data"][0]
    shown = json.loads(cli(accounts, "webhooks", "show", created["id"], check=True).stdout)
    assert shown == {k: v for k, v in created.items() if k != "secret"}

    # A hold made with the command is an event for the endpoint that asked for it only.
    cli(accounts, "holds", "create", "--account", "acct0001", "--reason", "r",
        "--subject", "447700900123", check=True)  # fmt: skip
    shown = json.loads(cli(accounts, "webhooks", "show", created["id"], check=True).stdout)
    assert shown["deliveries"] == {"pending": 1, "delivered": 0, "failed": 0}

    deleted = cli(accounts, "webhooks", "delete", created["id"], check=True)
    assert json.loads(deleted.stdout)["id"] == created["id"]
    with store_at(accounts["DATABASE_URL"]):
        assert [e.id for e in WebhookEndpoint.select()] == [other["id"]]
        assert WebhookEvent.select().count() == 0


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--account", "nobody", "--url", "https://x.example", "--event", "job.failed"],
         "no account"),
        (["--account", "acct0001", "--url", "ftp://x.example", "--event", "job.failed"],
         "http:// or https://"),
        (["--account", "acct0001", "--url", "https://", "--event", "job.failed"], "with a host"),
        (["--account", "acct0001", "--url", "https://x.example", "--event", "job.started"],
         "job.started"),
        (["--account", "acct0001", "--url", "https://x.example"], "at least one event"),
    ],
)  # fmt: skip
def test_a_bad_endpoint_is_one_line_and_registers_nothing(accounts, args, fragment):
    one_line_error(cli(accounts, "webhooks", "create", *args), fragment)
    with store_at(accounts["DATABASE_URL"]):
        assert WebhookEndpoint.select().count() == 0


def test_an_unknown_endpoint_is_one_line(accounts):
    for action in ("show", "delete"):
        one_line_error(
            cli(accounts, "webhooks", action, "whk_nope"), "no webhook with id 'whk_nope'"
        )
    one_line_error(cli(accounts, "webhooks", "list", "--account", "nobody"), "no account")


def test_an_account_has_at_most_ten_endpoints(accounts):
    for _ in range(10):
        create(accounts, "--event", "job.failed")
    result = cli(
        accounts, "webhooks", "create", "--account", "acct0001",
        "--url", "https://example.com/11", "--event", "job.failed",
    )  # fmt: skip
    one_line_error(result, "at most 10")
