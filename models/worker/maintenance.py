"""Making erasure real on PostgreSQL.

An UPDATE there writes a new row version and leaves the old one, scrubbed values and all,
in the table (and its TOAST table) as a dead tuple until VACUUM removes it; index entries
of the old version go the same way. SQLite needs none of this: `secure_delete` zeroes
freed space at commit (models/store/state.py).

What stays out of the service's reach: the WAL (and its archive, base backups and
replicas) holds page images of the old versions until the WAL is recycled and the backups
expire; docs/erasure.md says how operators should handle them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import peewee

from models.jobs.job import JobObject, RedactionJob
from models.proof import entries
from models.proof.entries import LogState
from models.records.transaction import Transaction
from models.store.base import is_postgres, utcnow

REWRITTEN = (Transaction, JobObject, RedactionJob)

logger = logging.getLogger("redact.worker.maintenance")
"""The tables redaction rewrites: scrubbed records, forgotten numbers and digests."""


def vacuum_erased(
    db: peewee.Database, progress: Callable[[int, int], None] | None = None
) -> list[str]:
    """VACUUM (with ANALYZE) the tables redaction rewrites, so that no dead row version
    keeps a scrubbed value; returns their names ([] on SQLite, which needs none).

    Then each account whose erasure log grew since its last maintenance gets a
    `maintenance` entry: every redaction before `erased_before` (the log's size when the
    VACUUM began: committed, so no longer visible to any new transaction) is erased.

    VACUUM cannot remove a version an open transaction may still see, and says nothing
    when it keeps one: so no entry is written when a transaction that began before this
    run, a replication slot or a prepared transaction still holds back the horizon (seen
    through pg_stat_activity, which shows other roles' sessions only to a superuser or
    pg_read_all_stats). The service holds no transaction longer than a batch. `progress`,
    if given, is called with the tables vacuumed so far and their number."""
    if not is_postgres(db):
        return []
    tables = [model._meta.table_name for model in REWRITTEN]
    with db.connection_context():
        started = utcnow()
        (begun,) = db.execute_sql("SELECT clock_timestamp()").fetchone()
        grown: list[Any] = list(
            LogState.select(LogState.api_key, LogState.size)
            .where(LogState.size > LogState.erased_before)
            .tuples()
        )
        connection = db.connection()
        connection.rollback()  # VACUUM runs outside any transaction
        autocommit = connection.autocommit
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                for done, table in enumerate(tables, start=1):
                    cursor.execute(f'VACUUM (ANALYZE) "{table}"')
                    if progress is not None:
                        progress(done, len(tables))
        finally:
            connection.autocommit = autocommit
        holding = _holding_back(db, begun)
        if holding:
            logger.warning(
                "maintenance: %s may still see old row versions; erasure not recorded", holding
            )
            return tables
        with db.atomic():
            entries.append(
                [
                    (
                        api_key,
                        "maintenance",
                        {
                            "erased_before": size,
                            "started": entries.timestamp(started),
                            "tables": tables,
                        },
                    )
                    for api_key, size in grown
                ],
                utcnow(),
            )
            for api_key, size in grown:
                LogState.update(erased_before=size + 1).where(LogState.api_key == api_key).execute()
    return tables


def _holding_back(db: peewee.Database, begun) -> str | None:
    """What, if anything, may still see row versions older than `begun`."""
    (sessions,) = db.execute_sql(
        "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
        " AND backend_xmin IS NOT NULL AND xact_start <= %s",
        (begun,),
    ).fetchone()
    if sessions:
        return f"{sessions} transaction(s) open since before the VACUUM"
    (slots,) = db.execute_sql(
        "SELECT count(*) FROM pg_replication_slots WHERE xmin IS NOT NULL"
    ).fetchone()
    if slots:
        return f"{slots} replication slot(s) holding the horizon"
    (prepared,) = db.execute_sql(
        "SELECT count(*) FROM pg_prepared_xacts WHERE prepared <= %s", (begun,)
    ).fetchone()
    if prepared:
        return f"{prepared} prepared transaction(s)"
    return None
