"""Concurrent redactions share transactions (GroupCommit): each record is scrubbed once,
audited once, and every caller gets its own outcome, also when one batch mixes
successes, duplicates and errors."""

from __future__ import annotations

import concurrent.futures
import datetime

import pytest

from models import (
    PrematureRedaction,
    RecordNotFound,
    RedactionAudit,
    Transaction,
    current_store,
    database,
    redact_transaction,
)
from tests.support import (
    POSTGRES_URL,
    START,
    add_account,
    add_records,
    opened,
    record,
    require_service,
)


def redact(transaction_id: str, api_key: str = "acct0001"):
    try:
        return redact_transaction(
            api_key=api_key,
            products={"sms"},
            transaction_id=transaction_id,
            product="sms",
            direction=None,
            now=START,
            min_age_seconds=3600,
            trace_id="t" * 32,
        )
    except (RecordNotFound, PrematureRedaction) as exc:
        return type(exc).__name__


def test_concurrent_requests_each_get_their_outcome(app):
    add_account("acct0001")
    add_account("acct0002")
    ids = [f"0A00000000CONC{n:03d}" for n in range(60)]
    add_records(
        *(record(i) for i in ids),
        record("0A00000000YOUNG01", age=datetime.timedelta(minutes=1)),
        record("0A00000000OTHER01", api_key="acct0002"),
    )
    calls = [(i,) for i in ids] * 2 + [
        ("0A00000000YOUNG01",),
        ("0A00000000OTHER01",),
        ("0A00000000MISSING",),
    ]
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda args: redact(*args), calls))

    first, second = results[:60], results[60:120]
    # each id was redacted twice concurrently: exactly one call scrubbed it
    assert all(a is not b and {a, b} == {True, False} for a, b in zip(first, second, strict=True))
    assert results[120:] == ["PrematureRedaction", "RecordNotFound", "RecordNotFound"]
    with database.connection_context():
        assert Transaction.select().where(Transaction.redacted_at.is_null(False)).count() == 60
        assert RedactionAudit.select().count() == 60
        assert {a.transaction_id for a in RedactionAudit.select()} == set(ids)
        assert (
            opened(Transaction.get(Transaction.id == "0A00000000OTHER01")).sender == "447700900001"
        )


def run_concurrently(batch_fn, items, expected: type[Exception]) -> list:
    """Each item through GroupCommit from 8 threads; an `expected` error as its message."""

    def call(item):
        try:
            return current_store().group_commit.run(batch_fn, item)
        except expected as exc:
            return str(exc)

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(call, items))


def test_a_failing_batch_is_rolled_back_for_every_caller(app):
    """GroupCommit's promise: outcomes only from a committed transaction. A batch whose
    function fails leaves nothing behind and raises to each of its callers."""

    def write_then_fail(items):
        for item in items:
            RedactionAudit.create(
                at=START, api_key="acct0001", transaction_id=item, product="sms", trace_id="t" * 32
            )
        raise RuntimeError("disk full")

    results = run_concurrently(write_then_fail, [f"id{n}" for n in range(40)], RuntimeError)
    assert results == ["disk full"] * 40
    with database.connection_context():
        assert RedactionAudit.select().count() == 0


def test_outcome_exceptions_reach_only_their_caller(app):
    def half_refused(items):
        for i in items:
            if i % 2 == 0:
                RedactionAudit.create(
                    at=START, api_key="a", transaction_id=i, product="sms", trace_id="t"
                )
        return [i if i % 2 == 0 else ValueError(f"odd {i}") for i in items]

    results = run_concurrently(half_refused, range(40), ValueError)
    assert results == [i if i % 2 == 0 else f"odd {i}" for i in range(40)]
    with database.connection_context():
        assert RedactionAudit.select().count() == 20


@pytest.mark.postgres
def test_concurrent_redactions_need_few_connections(make_app, clock):
    """Batches borrow one pooled connection each, so 16 threads do not open 16 PostgreSQL
    connections (the server's default limit is 100 for every worker together)."""
    import psycopg2

    require_service("PostgreSQL", "127.0.0.1", 5432)
    make_app(POSTGRES_URL)
    add_account("acct0001")
    ids = [f"0A00000000POOL{n:03d}" for n in range(64)]
    add_records(*(record(i) for i in ids))
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        assert list(pool.map(redact, ids)) == [True] * len(ids)
    database.close()
    watcher = psycopg2.connect(POSTGRES_URL)
    with watcher, watcher.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
        )
        assert cursor.fetchone()[0] <= 3
    watcher.close()
