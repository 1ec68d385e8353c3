"""Schemathesis over the three contracts against a live server, as the Procfile runs it
(`redact serve` with 2 workers, real HTTP): positive and negative data, every default check.
REDACT_FUZZ_EXAMPLES sets the examples per operation and mode (default 120: up to 4,080
cases over the 17 operations); the limits are set high so fuzzing is never throttled."""

from __future__ import annotations

import collections
import json
import os
import urllib.parse

import hypothesis
import pytest
import schemathesis
from schemathesis import GenerationMode

from app.http.contracts import SPEC_DIR
from tests.support import (
    PASSWORD,
    SUBJECT_KEY,
    Service,
    basic,
    cli,
    fuzz_headers,
    fuzzable,
    operation_ids,
    record,
)

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("REDACT_FUZZ_EXAMPLES", "120"))
CASES = collections.Counter()  # cases sent, by operation


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    directory = tmp_path_factory.mktemp("live")
    env = {
        "DATABASE_URL": f"sqlite:///{directory / 'redact.db'}",
        "REDACT_SUBJECT_KEY": SUBJECT_KEY,
        "REDACT_RATE_LIMIT": "1000000/second",
        "REDACT_AUTH_FAILURE_LIMIT": "1000000/second",
        "REDACT_MAX_ACTIVE_JOBS": "1000000",
    }
    with Service(env, directory, workers=2) as service:
        account = ("--api-key", "fuzz0001", "--api-secret", PASSWORD)
        cli(env, "accounts", "create", *account, check=True)
        records = "".join(
            json.dumps(record(f"0A00000000FUZZ{n:03d}", api_key="fuzz0001")) + "\n"
            for n in range(20)
        )
        cli(env, "transactions", "load", "-", stdin=records, check=True)
        yield service


@pytest.mark.parametrize(
    "spec", ["redact.yml", "jobs.yml", "records.yml", "proof.yml", "webhooks.yml"]
)
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_contract_on_a_live_server(live, spec, mode):
    schema = schemathesis.openapi.from_path(SPEC_DIR / spec)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == len(operation_ids(schema.raw_schema))
    for operation in operations:
        if not fuzzable(schema, operation, mode):
            continue

        @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
        @hypothesis.settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(hypothesis.HealthCheck),
        )
        def check(case):
            headers = fuzz_headers(case, basic("fuzz0001"))
            response = case.call(base_url=f"{live.base}/v1/redact", headers=headers)
            case.validate_response(response)
            # A wrong base path would pass as a documented 404: a case may miss the routes
            # only through a control character in a path parameter, which no route has.
            if '"detail": "No such path' in response.text:
                path = urllib.parse.unquote(urllib.parse.urlsplit(response.request.url).path)
                assert any(ord(c) < 32 or c == "\x7f" for c in path), response.text
            CASES[operation.label] += 1  # noqa: B023 (called at once, in this iteration)

        check()
        assert CASES[operation.label] > 0
