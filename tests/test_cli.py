"""The `redact` command on a real database file: in this process through click's CliRunner
and the console script's wrapper (support.cli), and as a process where the behaviour is
the process's (the installed console script's exit codes, `serve`)."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from models import MODELS, PRODUCTS, Account, Transaction, database
from tests.support import (
    PROJECT_VERSION,
    SUBJECT_KEY,
    cli,
    one_line_error,
    postgres_env,
    redact,
    require_service,
    served,
    store_at,
)


def stored(env) -> tuple[list[str], list[str]]:
    """The accounts' keys and the transactions' ids in the command's store."""
    with store_at(env["DATABASE_URL"], tables=True):
        return (
            [a.api_key for a in Account.select()],
            [t.id for t in Transaction.select().order_by(Transaction.id)],
        )


def test_accounts_create_with_given_key_secret_and_products(env):
    result = cli(
        env,
        "accounts",
        "create",
        "--api-key",
        "abc123",
        "--api-secret",
        "secret-123",
        "--products",
        "sms,voice",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "api_key": "abc123",
        "api_secret": "secret-123",
        "products": ["sms", "voice"],
    }
    with store_at(env["DATABASE_URL"]):
        account = Account.get_by_id("abc123")
        assert "secret-123" not in account.secret_hash
        assert Account.authenticate("abc123", "secret-123") is not None
        assert Account.authenticate("abc123", "secret-124") is None


def test_accounts_create_generates_key_and_secret_with_all_products(env):
    result = cli(env, "accounts", "create", check=True)
    created = json.loads(result.stdout)
    assert created["products"] == list(PRODUCTS)
    assert len(created["api_key"]) >= 8 and len(created["api_secret"]) >= 16
    again = json.loads(cli(env, "accounts", "create", check=True).stdout)
    assert again["api_key"] != created["api_key"]


@pytest.mark.parametrize(
    "args,fragment,code",
    [
        (["--products", "sms,fax"], "unknown product fax", 1),
        (["--products", ","], "unknown product", 1),
        (["--api-key", "has:colon"], "--api-key", 1),
        (["--api-key", ""], "--api-key", 1),
        (["--api-secret", "short"], "--api-secret", 1),
        (["--bogus"], "--bogus", 2),  # click's usage error, as the wrapper words it
    ],
)
def test_accounts_create_rejects_bad_input(env, args, fragment, code):
    one_line_error(cli(env, "accounts", "create", *args), fragment, code)
    assert stored(env) == ([], [])


def test_accounts_create_refuses_an_existing_key(env):
    assert cli(env, "accounts", "create", "--api-key", "abc123").returncode == 0
    one_line_error(cli(env, "accounts", "create", "--api-key", "abc123"), "already exists", 1)


def good_line(id_, **extra):
    return json.dumps(
        {
            "id": id_,
            "api_key": "abc123",
            "product": "sms",
            "type": "inbound",
            "created_at": "2026-01-01T00:00:00Z",
            "from": "447700900001",
            "to": "447700900002",
            "text": "hi",
            **extra,
        }
    )


def test_transactions_load_from_file_and_stdin(env, tmp_path):
    cli(env, "accounts", "create", "--api-key", "abc123", check=True)
    path = tmp_path / "records.jsonl"
    path.write_text(good_line("a1", status="delivered") + "\n\n" + good_line("a2") + "\n")
    result = cli(env, "transactions", "load", str(path))
    assert (result.returncode, result.stdout) == (0, "loaded 2 transactions\n")
    result = cli(env, "transactions", "load", "-", stdin=good_line("a3"))
    assert (result.returncode, result.stdout) == (0, "loaded 1 transaction\n")
    assert stored(env)[1] == ["a1", "a2", "a3"]
    with store_at(env["DATABASE_URL"]):
        first = Transaction.get(Transaction.id == "a1")
        assert (first.direction, first.details) == ("inbound", {"status": "delivered"})


@pytest.mark.parametrize(
    "bad,fragment",
    [
        ("{not json", "line 2: not JSON"),
        ("[1, 2]", "line 2: a record must be a JSON object"),
        (good_line("b2", product="fax"), "line 2: product"),
        (good_line("b2", created_at="yesterday"), "line 2: created_at"),
        (good_line("b2", api_key="nobody"), "line 2: api_key: no account 'nobody'"),
        (good_line("b1", text="other"), "line 2: id 'b1' is already stored with other content"),
        (
            json.dumps(
                {
                    "id": "b2",
                    "api_key": "abc123",
                    "product": "voice",
                    "type": "inbound",
                    "created_at": "2026-01-01T00:00:00Z",
                }
            ),
            "line 2: type",
        ),
        (
            json.dumps(
                {"api_key": "abc123", "product": "sms", "created_at": "2026-01-01T00:00:00Z"}
            ),
            "line 2: id",
        ),
    ],
)
def test_transactions_load_reports_the_bad_line_and_stores_nothing(env, bad, fragment):
    cli(env, "accounts", "create", "--api-key", "abc123", check=True)
    result = cli(env, "transactions", "load", "-", stdin=good_line("b1") + "\n" + bad)
    one_line_error(result, fragment, 1)
    assert "nothing was loaded" in result.stderr
    assert stored(env)[1] == []


def test_transactions_load_missing_file(env):
    one_line_error(
        cli(env, "transactions", "load", "/nonexistent/records.jsonl"), "No such file", 2
    )


def test_bad_configuration_stops_with_one_line(env):
    result = cli({**env, "REDACT_RATE_LIMIT": "lots"}, "accounts", "create")
    one_line_error(result, "REDACT_RATE_LIMIT='lots' is not a rate limit", 2)


@pytest.mark.slow
def test_the_installed_command_exits_with_one_line_and_its_code(env):
    """The console script as installed, run as a process: `serve` refuses a bad
    configuration before it starts anything, a usage error and a failed command exit
    with their codes."""
    one_line_error(redact({**env, "DATABASE_URL": "mysql://x/y"}, "serve"), "DATABASE_URL", 2)
    one_line_error(redact(env, "accounts", "create", "--bogus"), "--bogus", 2)
    one_line_error(redact(env, "jobs", "show", "rj_nope"), "no store at", 1)
    redact(env, "migrate", check=True)
    one_line_error(redact(env, "jobs", "show", "rj_nope"), "no redaction job 'rj_nope'", 1)
    assert redact(env, "config").returncode == 0


def test_unreachable_database_is_one_line(env):
    result = cli(
        {
            **env,
            "DATABASE_URL": "postgresql://u:pw@127.0.0.1:1/x",
            "REDACT_KEYSTORE_URL": "postgresql://u:pw@127.0.0.1:1/keys",
            "REDACT_KEK": "5a" * 32,
        },
        "accounts",
        "create",
    )
    one_line_error(result, "cannot open the database postgresql://u:***@127.0.0.1:1/x", 1)
    assert "pw" not in result.stderr


@pytest.mark.slow
def test_serve_demo_runs_the_quickstart(env, tmp_path):
    """`redact serve --demo`: tables, demo data, the printed curl line works, and each
    request's log line carries the trace id its problem body names."""
    url_path = "/v1/redact/transaction"
    auth = ("demo0001", "demo-secret-0001")
    with served(env, tmp_path, "--demo", timeout=30) as (_, base):
        first = httpx.post(
            f"{base}{url_path}",
            auth=auth,
            json={"id": "0A0000000DEMO0001", "product": "sms", "type": "outbound"},
        )
        assert first.status_code == 204
        missing = httpx.post(
            f"{base}{url_path}", auth=auth, json={"id": "0A00000000NOTHERE", "product": "sms"}
        )
        assert missing.status_code == 404
        # The banner: the version, where it serves and its documentation page, which answers.
        out = (tmp_path / "serve.out").read_text()
        assert f"redact {PROJECT_VERSION} serving at {base} (1 worker)" in out
        page = re.search(r"API documentation: (\S+)", out).group(1)
        assert page == f"{base}/v1/redact/ui/"
        assert httpx.get(page).status_code == 200
    err = (tmp_path / "serve.log").read_text()
    assert "curl -i -u demo0001:demo-secret-0001" in out
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    requests = [line for line in lines if line.get("event") == "request"]
    logged = {line["trace_id"]: line for line in requests}
    assert logged[missing.json()["instance"]]["status"] == 404
    assert logged[missing.json()["instance"]]["route"] == "POST /v1/redact/transaction"
    assert any(line["status"] == 204 for line in requests)
    [config] = [line for line in lines if line.get("event") == "config"]
    assert config["settings"]["DATABASE_URL"] == env["DATABASE_URL"]
    assert config["settings"]["REDACT_SUBJECT_KEY"] == "***"


def test_version_is_the_distributions(env):
    result = cli(env, "--version")
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        f"redact {PROJECT_VERSION}\n",
        "",
    )


def test_config_prints_the_effective_settings_with_secrets_masked(env):
    env = {**env, "RATELIMIT_STORAGE_URI": "redis://:hunter2@127.0.0.1:6379/0"}
    result = cli(env, "config")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["version"] == PROJECT_VERSION
    assert report["RATELIMIT_STORAGE_URI"] == "redis://:***@127.0.0.1:6379/0"
    assert report["REDACT_SUBJECT_KEY"] == "***"
    assert report["REDACT_QUEUE_URL"] == env["DATABASE_URL"] + "-queue"  # resolved
    assert report["REDACT_RATE_LIMIT"] == "170/second"
    assert "hunter2" not in result.stdout and SUBJECT_KEY not in result.stdout
    bad = cli({**env, "REDACT_RATE_LIMIT": "fast"}, "config")
    assert bad.returncode == 2 and bad.stderr.startswith("error: REDACT_RATE_LIMIT=")


def test_release_phase_creates_the_tables(env):
    result = cli(env, "migrate")
    assert (result.returncode, result.stdout) == (0, "tables ready\n"), result.stderr
    with store_at(env["DATABASE_URL"]):
        assert set(database.get_tables()) == {m._meta.table_name for m in MODELS}


def test_maintenance_has_nothing_to_do_on_sqlite(env):
    cli(env, "migrate", check=True)
    sqlite = cli(env, "maintenance")
    assert sqlite.returncode == 0, sqlite.stderr
    assert sqlite.stdout.startswith("nothing to do")


@pytest.mark.postgres
def test_maintenance_vacuums_on_postgresql(env):
    require_service("PostgreSQL", "127.0.0.1", 5432)
    postgres = cli({**env, **postgres_env()}, "maintenance")
    assert postgres.returncode == 0, postgres.stderr
    assert postgres.stdout.strip() == "vacuumed transaction, redaction_job_object, redaction_job"
