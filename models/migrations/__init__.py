"""Creating the tables, and bringing a store made by an earlier version up to date.

Columns added since a table was created are added (all are nullable or have defaults).
When the number index arrives, records stored before it get their keyed hashes, so that
a subject job finds them too. Idempotent: run by every start (`redact serve`, the
release phase, the CLI).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import peewee
from playhouse.migrate import PostgresqlMigrator, SqliteMigrator, migrate

from models.proof.entries import LogChunk
from models.proof.tree import LogNode
from models.records.transaction import Transaction
from models.store.base import database, is_postgres
from models.store.state import current_store

logger = logging.getLogger("redact.migrations")


def create_or_upgrade(models) -> None:
    # One transaction: a store is upgraded whole (columns and hashes) or not at all.
    with database.connection_context(), database.atomic():
        existing = set(database.get_tables())
        added: dict[str, set] = {}
        for model in models:
            if model._meta.table_name in existing:
                added[model._meta.table_name] = _add_missing_columns(model)
        if Transaction._meta.table_name in existing:
            _key_records_by_account()
        upgraded = {table: sorted(columns) for table, columns in added.items() if columns}
        if upgraded:
            logger.info("upgrading the store", extra={"fields": {"columns_added": upgraded}})
        with _without_rowid(KEYED_ONLY if not is_postgres() else ()):
            database.create_tables(models, safe=True)  # new tables, indexes not yet there
        indexed = (
            _index_numbers() if "sender_key" in added.get(Transaction._meta.table_name, ()) else 0
        )
        if added:
            logger.info("store upgraded", extra={"fields": {"records_indexed": indexed}})


# Appended to with every redaction, read by their key alone: on SQLite, tables without
# rowids (Peewee's `without_rowid` option, which PostgreSQL has no syntax for, so it is
# set only while SQLite's tables are created).
KEYED_ONLY = (LogChunk, LogNode)


@contextlib.contextmanager
def _without_rowid(models) -> Iterator[None]:
    for model in models:
        model._meta.without_rowid = True
    try:
        yield
    finally:
        for model in models:
            model._meta.without_rowid = False


def _add_missing_columns(model) -> set:
    present = {column.name for column in database.get_columns(model._meta.table_name)}
    missing = [field for field in model._meta.sorted_fields if field.column_name not in present]
    if missing:
        migrator = (
            PostgresqlMigrator(database.obj) if is_postgres() else SqliteMigrator(database.obj)
        )
        migrate(
            *(
                migrator.add_column(model._meta.table_name, field.column_name, field)
                for field in missing
            )
        )
    return {field.column_name for field in missing}


def _key_records_by_account() -> None:
    """Stores made before records were named within their account keyed them by id alone:
    key them by (id, account). PostgreSQL swaps the constraint; SQLite, which cannot,
    rebuilds the table (secure_delete zeroes the old one's pages as it is dropped)."""
    table = Transaction._meta.table_name
    if database.get_primary_keys(table) != ["id"]:
        return
    logger.info("keying records by id and account", extra={"fields": {"table": table}})
    if is_postgres():
        name = database.execute_sql(
            "SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'p'",
            (f'"{table}"',),
        ).fetchone()[0]
        database.execute_sql(
            f'ALTER TABLE "{table}" DROP CONSTRAINT "{name}", ADD PRIMARY KEY (id, api_key)'
        )
        return
    old = f"{table}_before_account_key"
    for index in database.get_indexes(table):  # their names are wanted for the new table
        if not index.name.startswith("sqlite_autoindex"):
            database.execute_sql(f'DROP INDEX "{index.name}"')
    database.execute_sql(f'ALTER TABLE "{table}" RENAME TO "{old}"')
    database.create_tables([Transaction])
    columns = ", ".join(f'"{field.column_name}"' for field in Transaction._meta.sorted_fields)
    database.execute_sql(f'INSERT INTO "{table}" ({columns}) SELECT {columns} FROM "{old}"')
    database.execute_sql(f'DROP TABLE "{old}"')


def _index_numbers(batch: int = 1000) -> int:
    """Hash the numbers of unredacted records that have none (stored before the index
    existed); returns how many records were updated."""
    key = current_store().subject_key
    needs = (
        Transaction.redacted_at.is_null()
        & Transaction.sender_key.is_null()
        & Transaction.recipient_key.is_null()
        & (Transaction.sender.is_null(False) | Transaction.recipient.is_null(False))
    )
    done = 0
    after = peewee.Tuple("", "")
    name = peewee.Tuple(Transaction.id, Transaction.account)
    while True:
        rows: list[Any] = list(
            Transaction.select(
                Transaction.id, Transaction.account, Transaction.sender, Transaction.recipient
            )
            .where(needs & (name > after))
            .order_by(Transaction.id, Transaction.account)
            .limit(batch)
            .tuples()
        )
        if not rows:
            return done
        with database.atomic():
            for transaction_id, account, sender, recipient in rows:
                sender_key, recipient_key = key.hash(sender), key.hash(recipient)
                if sender_key or recipient_key:
                    (
                        Transaction.update(sender_key=sender_key, recipient_key=recipient_key)
                        .where(
                            (Transaction.id == transaction_id) & (Transaction.account == account)
                        )
                        .execute()
                    )
                    done += 1
        after = peewee.Tuple(*rows[-1][:2])


def probe_write(items: list) -> list:
    """A group-commit batch function that proves the store takes a committed write, and
    has its tables (readiness). On SQLite it rewrites the header's user_version with its
    own value: a page written and synced at commit, like a redaction's. On PostgreSQL it
    takes a transaction id, which a read-only server refuses."""
    if not is_postgres():
        version = database.execute_sql("PRAGMA user_version").fetchone()[0]
        database.execute_sql(f"PRAGMA user_version = {int(version)}")
    else:
        database.execute_sql("SELECT txid_current()")
    Transaction.select(Transaction.id).limit(1).execute()
    return [True] * len(items)
