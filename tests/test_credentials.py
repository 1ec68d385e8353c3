"""Rotating an account's secret without downtime: both secrets work during the grace
period, only the new one after it; `redact accounts rotate-secret` does it."""

from __future__ import annotations

import datetime
import json
import os

import pytest

from models import Account, database, open_store

from .conftest import PASSWORD, START, SUBJECT_KEY, add_account, basic
from .test_cli import one_line_error, redact

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


@pytest.fixture
def env(tmp_path):
    return {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "REDACT_SUBJECT_KEY": SUBJECT_KEY,
    }


def test_rotate_secret_command(env):
    assert (
        redact(
            env, "accounts", "create", "--api-key", "acct0001", "--api-secret", PASSWORD
        ).returncode
        == 0
    )
    result = redact(
        env, "accounts", "rotate-secret", "--api-key", "acct0001", "--grace-seconds", "600"
    )
    assert result.returncode == 0, result.stderr
    rotated = json.loads(result.stdout)
    assert rotated["api_key"] == "acct0001" and len(rotated["api_secret"]) >= 16
    until = datetime.datetime.fromisoformat(rotated["previous_secret_valid_until"])
    open_store(env["DATABASE_URL"], subject_key=SUBJECT_KEY.encode())
    with database.connection_context():
        assert Account.authenticate("acct0001", rotated["api_secret"])
        assert Account.authenticate("acct0001", PASSWORD, until - datetime.timedelta(seconds=1))
        assert not Account.authenticate("acct0001", PASSWORD, until)
        stored = Account.get_by_id("acct0001")
        assert rotated["api_secret"] not in stored.secret_hash + stored.previous_secret_hash
    one_line_error(
        redact(env, "accounts", "rotate-secret", "--api-key", "nobody"), "no account 'nobody'"
    )
