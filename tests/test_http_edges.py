"""Requests outside the happy path: each gets a clear 4xx problem body, never a 500."""

from __future__ import annotations

import re

import pytest
import yaml

from app import create_app
from app.handlers.redact import RedactApi
from app.http.contracts import SPEC_DIR, OperationResolver
from tests.support import add_account, add_records, basic, record, wait_for

URL = "/v1/redact/transaction"


def assert_problem(response, status: int) -> dict:
    assert response.status_code == status
    body = response.json()
    assert set(body) == {"type", "title", "detail", "instance"}
    assert len(body["instance"]) == 32
    return body


def test_every_operation_id_resolves_to_a_handler(app):
    spec = yaml.safe_load((SPEC_DIR / "redact.yml").read_text())
    handlers = RedactApi(app.services.settings.min_age_seconds, clock=None).operations()
    resolver = OperationResolver(handlers)
    for path in spec["paths"].values():
        for operation in path.values():
            assert callable(resolver.resolve_function_from_operation_id(operation["operationId"]))


def test_every_operation_of_every_contract_is_reached(client):
    """The contracts share /v1/redact: each operation's route reaches its own contract
    (unauthenticated, it meets that operation's security: 401, or for the public keys
    200), none answers 404 for a path another contract shadows."""
    from app.http.contracts import CONTRACTS, routes

    reached = {}
    for operation_id, route in routes(CONTRACTS).items():
        method, path = route.split(" ", 1)
        path = re.sub(r"\{[^}]+\}", "x1", path)
        response = client.request(method, path, json={})
        reached[operation_id] = response.status_code
    assert reached.pop("list-keys") == 200
    assert set(reached.values()) == {401}, reached
    assert len(reached) == 32  # and list-keys


@pytest.mark.parametrize("method", ["get", "put", "delete", "patch"])
def test_wrong_method_is_405_with_allow(client, account, method):
    response = client.request(method.upper(), URL, headers=account)
    body = assert_problem(response, 405)
    assert response.headers["Allow"] == "POST"
    assert body["title"] == "Method Not Allowed"


def test_unknown_path_is_a_404_problem(client):
    body = assert_problem(client.get("/v1/redact/nothing-here"), 404)
    assert body["detail"] == "No such path: /v1/redact/nothing-here"
    assert_problem(client.post("/nothing-here"), 404)


def test_declared_oversized_body_is_413_without_reading_it(client, account):
    huge = b'{"id": "' + b"x" * 70_000 + b'", "product": "sms"}'
    response = client.post(
        URL, content=huge, headers={**account, "Content-Type": "application/json"}
    )
    body = assert_problem(response, 413)
    assert "65536" in body["detail"]


def test_streamed_oversized_body_is_413(client, account):
    def chunks():
        yield b'{"id": "'
        for _ in range(100):
            yield b"x" * 1000
        yield b'"}'

    response = client.post(
        URL, content=chunks(), headers={**account, "Content-Type": "application/json"}
    )
    assert_problem(response, 413)


def test_deeply_nested_json_is_a_clear_422(client, account):
    nested = b"[" * 5000 + b"]" * 5000
    response = client.post(
        URL, content=nested, headers={**account, "Content-Type": "application/json"}
    )
    assert_problem(response, 422)


def test_problem_bodies_never_carry_a_stack_trace(client, account):
    response = client.post(
        URL, content=b"\x00\x01\x02", headers={**account, "Content-Type": "application/json"}
    )
    body = assert_problem(response, 422)
    assert "Traceback" not in response.text and 'File "' not in body["detail"]


def test_bad_settings_stop_the_factory():
    from app.settings import ConfigError, Settings

    with pytest.raises(ConfigError, match="REDACT_MIN_AGE_SECONDS"):
        create_app(Settings.from_env({"REDACT_MIN_AGE_SECONDS": "soon"}))


def test_chunked_body_within_the_limit_is_read(client, account):
    def chunks():
        yield b'{"id": "0A0000000NOTHERE", '
        yield b'"product": "sms"}'

    response = client.post(
        URL, content=chunks(), headers={**account, "Content-Type": "application/json"}
    )
    assert_problem(response, 404)


def test_an_unusable_store_is_a_503_and_nothing_hangs(make_app, tmp_path):
    """The SQLite write lock cannot be taken (its path is a directory): each request gets a
    503 problem at once, and the next one is not stuck behind the failed one."""
    db_path = tmp_path / "redact.db"
    app = make_app(f"sqlite:///{db_path}")
    headers = add_account("acct0001")
    add_records(record("0A0000000123ABCD1"))
    (tmp_path / "redact.db.lock").mkdir()
    with app.test_client() as client:
        for _ in range(3):
            response = client.post(
                URL, json={"id": "0A0000000123ABCD1", "product": "sms"}, headers=headers
            )
            body = assert_problem(response, 503)
            assert response.headers["Retry-After"] == "1"
            assert "unavailable" in body["detail"]


@pytest.mark.parametrize(
    "content_type",
    ["APPLICATION/JSON", "Application/Json; charset=UTF-8", "application/json;charset=utf-8"],
)
def test_media_type_is_case_insensitive(client, account, content_type):
    response = client.post(
        URL,
        content=b'{"id": "0A0000000NOTHERE", "product": "sms"}',
        headers={**account, "Content-Type": content_type},
    )
    assert_problem(response, 404)


def test_unpaired_surrogate_is_a_422(client, account):
    response = client.post(
        URL,
        content=b'{"id": "\\ud800", "product": "sms"}',
        headers={**account, "Content-Type": "application/json"},
    )
    assert "surrogate" in assert_problem(response, 422)["detail"]


def test_missing_content_type_is_taken_for_json(client, account):
    response = client.post(
        URL, content=b'{"id": "0A0000000NOTHERE", "product": "sms"}', headers=account
    )
    assert_problem(response, 404)


def test_malformed_content_length_is_a_400(client, account):
    response = client.post(
        URL,
        content=b'{"id": "x", "product": "sms"}',
        headers={**account, "Content-Type": "application/json", "Content-Length": "abc"},
    )
    assert_problem(response, 400)


@pytest.mark.parametrize(
    "path, allowed",
    [
        ("/v1/redact/jobs", "GET, POST"),
        ("/v1/redact/jobs/rj_x", "GET, POST"),
        ("/v1/redact/jobs/rj_x/run", "POST"),
        ("/v1/redact/jobs/rj_x/validation_errors", "GET"),
    ],
)
def test_wrong_method_on_a_jobs_path_allows_every_method_of_the_path(
    client, account, path, allowed
):
    """The contract's methods of the path, not only those of its first operation."""
    response = client.put(path, headers=account, json={})
    assert_problem(response, 405)
    assert response.headers["Allow"] == allowed


def test_every_contract_path_allows_exactly_its_methods(client, account):
    from app.http.contracts import CONTRACTS

    for name in CONTRACTS:
        spec = yaml.safe_load((SPEC_DIR / name).read_text())
        for path, operations in spec["paths"].items():
            methods = sorted(
                m.upper() for m in operations if m in ("get", "post", "put", "delete", "patch")
            )
            url = "/v1/redact" + re.sub(r"\{[^}]+\}", "x1", path)
            wrong = next(m for m in ("DELETE", "PATCH") if m not in methods)
            response = client.request(wrong, url, headers=account)
            assert_problem(response, 405)
            assert response.headers["Allow"] == ", ".join(methods), url


@pytest.mark.parametrize(
    "body",
    [
        b'{"id": "0A0000000123ABCD1", "product": "sms", "n": ' + b"9" * 5000 + b"}",
        b'{"id": ' + b"1" * 5000 + b', "product": "sms"}',
    ],
)
def test_an_integer_beyond_pythons_digit_limit_is_invalid_json(client, account, body):
    response = client.post(
        URL, content=body, headers={**account, "Content-Type": "application/json"}
    )
    assert "number too long" in assert_problem(response, 422)["detail"]


def test_a_huge_integer_in_a_jobs_body_is_a_422(client, account):
    response = client.post(
        "/v1/redact/jobs",
        content=b'{"objects": {"subjects": [' + b"1" * 5000 + b"]}}",
        headers={**account, "Content-Type": "application/json"},
    )
    assert_problem(response, 422)


def test_a_trailing_slash_is_a_404_problem_not_a_redirect(client, account):
    response = client.post(
        URL + "/",
        json={"id": "0A0000000123ABCD1", "product": "sms"},
        headers={**account, "Host": "elsewhere.example"},
        follow_redirects=False,
    )
    assert_problem(response, 404)
    assert "location" not in response.headers


def test_the_root_redirects_to_the_documentation_page(make_app, sqlite_url):
    """`GET /`, outside the contracts (which live under /v1/redact): no credentials, no
    limit; the page it names is Swagger UI for the contracts."""
    app = make_app(sqlite_url, rate_limit="1/minute")
    with app.test_client() as client:
        for _ in range(3):
            response = client.get("/", follow_redirects=False)
            assert response.status_code == 307
            assert response.headers["location"] == "/v1/redact/ui/"
        page = client.get("/", follow_redirects=True)
        assert page.status_code == 200 and page.url.path == "/v1/redact/ui/"
        assert page.headers["content-type"].startswith("text/html")
        assert "swagger-ui" in page.text and "/v1/redact/jobs-openapi.json" in page.text
        refused = client.post("/", json={}, follow_redirects=False)
        assert_problem(refused, 405)
        assert "GET" in refused.headers["allow"] and "location" not in refused.headers


def test_one_address_cannot_queue_more_than_its_share_of_credential_checks(make_app, tmp_path):
    """Guesses are counted as failures only once checked: while the checks wait (here the
    store is locked), one address gets at most CHECKS_WAITING_PER_ADDRESS of them queued,
    and its further guesses a 429 at once; the queued ones are answered when the store
    frees."""
    import concurrent.futures
    import sqlite3

    from app.http.auth import CHECKS_WAITING_PER_ADDRESS

    path = tmp_path / "redact.db"
    app = make_app(f"sqlite:///{path}")
    add_account("acct0001")
    guesses = CHECKS_WAITING_PER_ADDRESS + 4
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    with app.test_client() as client, concurrent.futures.ThreadPoolExecutor(guesses) as pool:
        answers = [
            pool.submit(
                client.post,
                URL,
                headers=basic("acct0001", f"guess-{n:04d}"),
                json={"id": "0A0000000123ABCD1", "product": "sms"},
            )
            for n in range(guesses)
        ]
        wait_for(
            lambda: (
                sum(answer.done() for answer in answers) >= guesses - CHECKS_WAITING_PER_ADDRESS
            ),
            timeout=30,
            interval=0.01,
            what="the extra guesses to be refused at once",
        )
        refused = [answer.result() for answer in answers if answer.done()]
        blocker.execute("ROLLBACK")
        statuses = sorted(answer.result().status_code for answer in answers)
    blocker.close()
    assert [r.status_code for r in refused] == [429] * (guesses - CHECKS_WAITING_PER_ADDRESS)
    assert all(r.headers["Retry-After"] == "1" for r in refused)
    assert statuses == [401] * CHECKS_WAITING_PER_ADDRESS + [429] * (
        guesses - CHECKS_WAITING_PER_ADDRESS
    )


def test_settings_never_show_their_secrets_in_a_repr():
    from app.settings import Settings

    settings = Settings.from_env(
        {},
        subject_key="subject-key-0123456789",
        metrics_token="scrape-secret-42",
        database_url="postgresql://u:db-pass-7@127.0.0.1/x",
        ratelimit_storage_uri="redis://:redis-pass-9@127.0.0.1/0",
        keystore_url="postgresql://k:keys-pass-3@127.0.0.1/keys",
        kek="7e" * 32,
    )
    shown = repr(settings)
    secrets = ("subject-key-0123456789", "scrape-secret-42", "db-pass-7", "redis-pass-9")
    for secret in (*secrets, "keys-pass-3", "7e" * 32):
        assert secret not in shown and secret not in str(settings)
    assert "postgresql://u:***@127.0.0.1/x" in shown
