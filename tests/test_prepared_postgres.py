"""On PostgreSQL, a batch's statements are prepared on the server once per connection
(models/store/prepared.py): the same rows as unprepared, through rollbacks and new
connections; a statement of many values is not prepared."""

from __future__ import annotations

import peewee
import pytest

from models import Transaction, database
from models.store.prepared import SERVER_PREPARED_MAX_PARAMS, PreparedQuery
from tests.support import POSTGRES_URL, add_account, add_records, record

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
    """The statements prepared on this connection that read the test's table."""
    rows = database.execute_sql("SELECT statement FROM pg_prepared_statements").fetchall()
    return [statement for (statement,) in rows if '"transaction"' in statement]


def test_a_statement_is_prepared_once_per_connection_and_outlives_a_rollback(make_app):
    make_app(POSTGRES_URL)
    add_account("acct0001")
    add_records(*(record(f"P{n}") for n in range(4)))
    with database.connection_context():
        database.execute_sql("DEALLOCATE ALL")  # what earlier tests left on this connection
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
        database.execute_sql("DEALLOCATE ALL")
        assert found(many) == ["P0"]
        assert prepared_here() == []
