"""A PostgreSQL connection the server ends inside a transaction fails with the error the
service answers with a 503 (models/store/postgres.py), and the pool goes on with a new one."""

from __future__ import annotations

import peewee
import psycopg2
import pytest

from models.store.postgres import open_pooled
from tests.support import POSTGRES_URL

pytestmark = pytest.mark.postgres

TABLE = "connection_test_rows"


@pytest.fixture
def db():
    db = open_pooled("postgresql", POSTGRES_URL.split("://", 1)[1])
    db.execute_sql(f"DROP TABLE IF EXISTS {TABLE}")
    db.execute_sql(f"CREATE TABLE {TABLE} (n integer PRIMARY KEY)")
    yield db
    db.close()
    db.execute_sql(f"DROP TABLE IF EXISTS {TABLE}")
    db.close()
    db.close_all()


@pytest.fixture
def other():
    """A second connection, autocommitting, to end the first and look from outside."""
    connection = psycopg2.connect(POSTGRES_URL)
    connection.autocommit = True
    yield connection
    connection.close()


def rows(connection) -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT n FROM {TABLE} ORDER BY n")
        return [n for (n,) in cursor.fetchall()]


def end_session(db, other) -> None:
    with other.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", (db.connection().get_backend_pid(),))


def test_a_transaction_whose_session_the_server_ended_fails_as_unavailable(db, other):
    with pytest.raises(peewee.OperationalError), db.atomic():
        db.execute_sql(f"INSERT INTO {TABLE} VALUES (1)")
        end_session(db, other)
        db.execute_sql(f"INSERT INTO {TABLE} VALUES (2)")
    assert rows(other) == []  # the server rolled back what the transaction wrote
    db.close()  # the pool drops the dead connection
    with db.atomic():
        db.execute_sql(f"INSERT INTO {TABLE} VALUES (3)")
    assert rows(other) == [3]


def test_a_failed_statement_on_a_live_connection_is_rolled_back(db, other):
    with pytest.raises(peewee.IntegrityError), db.atomic():
        db.execute_sql(f"INSERT INTO {TABLE} VALUES (1)")
        db.execute_sql(f"INSERT INTO {TABLE} VALUES (1)")
    assert rows(other) == []
    with db.atomic():  # the connection is usable: the rollback ran
        db.execute_sql(f"INSERT INTO {TABLE} VALUES (2)")
    assert rows(other) == [2]
