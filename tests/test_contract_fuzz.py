"""Schemathesis over the contracts (openapi/redact.yml, jobs.yml, records.yml, proof.yml,
webhooks.yml) against the app in-process: positive and negative data, every default check.
The limiter and the job limit are set high so fuzzing is never throttled (its checks do not
expect 429)."""

from __future__ import annotations

import hypothesis
import pytest
import schemathesis
from schemathesis import GenerationMode

from app.http.contracts import SPEC_DIR
from tests.support import add_account, add_records, fuzz_headers, fuzzable, operation_ids, record

# Seconds per operation and mode: the jobs contract's cases take about a minute in all.
pytestmark = pytest.mark.slow


@pytest.fixture
def fuzz_app(make_app, sqlite_url):
    return make_app(
        sqlite_url,
        rate_limit="1000000/second",
        auth_failure_limit="1000000/second",
        max_active_jobs=1000000,
    )


@pytest.fixture(params=["redact.yml", "jobs.yml", "records.yml", "proof.yml", "webhooks.yml"])
def api_schema(request, fuzz_app):
    loaded = schemathesis.openapi.from_path(SPEC_DIR / request.param)
    loaded.app = fuzz_app
    return loaded


@pytest.fixture
def credentials(fuzz_app):
    headers = add_account("fuzz0001")
    add_records(*(record(f"0A00000000FUZZ{n:03d}", api_key="fuzz0001") for n in range(20)))
    return headers


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_contract(api_schema, credentials, mode):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) == len(operation_ids(api_schema.raw_schema))
    for operation in operations:
        if not fuzzable(api_schema, operation, mode):
            continue

        @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
        @hypothesis.settings(
            max_examples=150,
            deadline=None,
            database=None,
            suppress_health_check=list(hypothesis.HealthCheck),
        )
        def check(case):
            case.call_and_validate(headers=fuzz_headers(case, credentials))

        check()
