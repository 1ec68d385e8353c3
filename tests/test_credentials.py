"""Rotating an account's secret without downtime: both secrets work during the grace
period, only the new one after it; `redact accounts rotate-secret` does it."""

from __future__ import annotations

import datetime
import json

from models import Account, database
from tests.support import PASSWORD, START, add_account, basic, cli, one_line_error, store_at

URL = "/v1/redact/transaction"
NEW = "n3w-s3cret-0002"


def authenticated(client, secret: str) -> bool:
    response = client.post(
        URL, json={"id": "0A00000000NOTHERE", "product": "sms"}, headers=basic("acct0001", secret)
    )
    assert response.status_code in (401, 404)
    return response.status_code == 404  # past authentication: the record is unknown


def test_both_secrets_work_during_the_grace_period_then_only_the_new(make_app, database_url, clock):
    app = make_app(database_url, credential_cache_seconds=0)
    add_account("acct0001")
    with database.connection_context():
        Account.rotate_secret("acct0001", NEW, datetime.timedelta(hours=1), START)
    with app.test_client() as client:
        assert authenticated(client, PASSWORD) and authenticated(client, NEW)
        assert not authenticated(client, "neither-of-them")
        clock.advance(minutes=59)
        assert authenticated(client, PASSWORD)
        clock.advance(minutes=1)
        assert not authenticated(client, PASSWORD)
        assert authenticated(client, NEW)


def test_rotate_secret_command(env):
    cli(env, "accounts", "create", "--api-key", "acct0001", "--api-secret", PASSWORD, check=True)
    result = cli(
        env, "accounts", "rotate-secret", "--api-key", "acct0001", "--grace-seconds", "600"
    )
    assert result.returncode == 0, result.stderr
    rotated = json.loads(result.stdout)
    assert rotated["api_key"] == "acct0001" and len(rotated["api_secret"]) >= 16
    until = datetime.datetime.fromisoformat(rotated["previous_secret_valid_until"])
    with store_at(env["DATABASE_URL"]):
        assert Account.authenticate("acct0001", rotated["api_secret"]).api_key == "acct0001"
        just_before = until - datetime.timedelta(seconds=1)
        assert Account.authenticate("acct0001", PASSWORD, just_before).api_key == "acct0001"
        assert Account.authenticate("acct0001", PASSWORD, until) is None
        stored = Account.get_by_id("acct0001")
        assert rotated["api_secret"] not in stored.secret_hash + stored.previous_secret_hash
    one_line_error(
        cli(env, "accounts", "rotate-secret", "--api-key", "nobody"), "no account 'nobody'", 1
    )
