"""On PostgreSQL, a batch's statements are prepared on the server once per connection
(models/store/prepared.py): the same rows as unprepared, through rollbacks and new
connections; a statement of many values is not prepared. Statements sent together in one
round trip each see what committed before they ran: a redaction that waited for a hold's
lock sees the hold."""

from __future__ import annotations

import threading
import time

import peewee
import pytest

from models import RecordHeld, Transaction, database, redact_transaction
from models.store.prepared import SERVER_PREPARED_MAX_PARAMS, PreparedQuery
from tests.support import POSTGRES_URL, START, add_account, add_records, hold_sms, record

pytestmark = pytest.mark.postgres

IDS = PreparedQuery(
    lambda mark, n: (
        Transaction.select(Transaction.id)
        .where(
            Transaction.id.in_([mark("id", i) for i in range(n)])
            & (Transaction.id != peewee.SQL("'%%'"))
        )
        .order_by(Transaction.id)
    )
)


def found(ids: list[str]) -> list[str]:
    return [id_ for (id_,) in IDS.execute(len(ids), {"id": ids}).fetchall()]


def prepared_here() -> list[str]:
    """The statements of `IDS` prepared on this connection (by its literal %)."""
    rows = database.execute_sql("SELECT statement FROM pg_prepared_statements").fetchall()
    return [statement for (statement,) in rows if "!= '%'" in statement]


def test_a_statement_is_prepared_once_per_connection_and_outlives_a_rollback(make_app):
    make_app(POSTGRES_URL)
    add_account("acct0001")
    add_records(*(record(f"P{n}") for n in range(4)))
    with database.connection_context():
        assert found(["P1", "P2"]) == ["P1", "P2"]
        statements = prepared_here()
        assert len(statements) == 1 and statements[0].startswith("PREPARE ")
        assert "$1" in statements[0] and "$2" in statements[0]
        assert "!= '%')" in statements[0]  # a literal %, as the driver would have sent it

        with database.atomic() as transaction:
            assert found(["P0", "P3"]) == ["P0", "P3"]
            transaction.rollback()
        assert found(["P3", "P0", "missing"]) == ["P0", "P3"]  # another shape
        assert found(["P2", "P1"]) == ["P1", "P2"]  # the first, after the rollback
        assert len(prepared_here()) == 2

    database.close_all()  # the next connection is a new one, with nothing prepared
    with database.connection_context():
        assert prepared_here() == []
        assert found(["P0", "P1"]) == ["P0", "P1"]
        assert len(prepared_here()) == 1


def test_a_statement_of_many_values_runs_unprepared(make_app):
    make_app(POSTGRES_URL)
    add_account("acct0001")
    add_records(record("P0"))
    many = ["P0"] + [f"none{n}" for n in range(SERVER_PREPARED_MAX_PARAMS)]
    with database.connection_context():
        assert found(many) == ["P0"]
        assert prepared_here() == []


def test_a_redaction_waiting_for_a_hold_to_commit_sees_the_hold(make_app):
    """The batch's account lock and its look for holds go in one round trip; the look
    must still see a hold committed while the lock was waited for (a statement of its
    own, with its own snapshot), or the held record would be scrubbed."""
    make_app(POSTGRES_URL)
    add_account("acct0001")
    add_records(record("HELD1"))
    outcome: list = []

    def redact() -> None:
        try:
            outcome.append(
                redact_transaction(
                    api_key="acct0001",
                    products={"sms"},
                    transaction_id="HELD1",
                    product="sms",
                    direction=None,
                    now=START,
                    min_age_seconds=3600,
                    trace_id="t" * 32,
                )
            )
        except RecordHeld as exc:
            outcome.append(exc)

    redaction = threading.Thread(target=redact)
    with database.connection_context(), database.atomic():
        hold_sms("HELD1")
        redaction.start()  # its batch now waits for the account's lock, held here
        deadline = time.monotonic() + 10
        waiting = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        while database.execute_sql(waiting).fetchone()[0] == 0:
            assert time.monotonic() < deadline, "the redaction never waited for the lock"
            time.sleep(0.01)
    redaction.join(10)
    assert len(outcome) == 1 and isinstance(outcome[0], RecordHeld), outcome
    with database.connection_context():
        assert Transaction.get(Transaction.id == "HELD1").redacted_at is None
