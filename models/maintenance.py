"""Making erasure real on PostgreSQL.

An UPDATE there writes a new row version and leaves the old one, scrubbed values and all,
in the table (and its TOAST table) as a dead tuple until VACUUM removes it; index entries
of the old version go the same way. SQLite needs none of this: `secure_delete` zeroes
freed space at commit (models/store.py).

What stays out of the service's reach: the WAL (and its archive, base backups and
replicas) holds page images of the old versions until the WAL is recycled and the backups
expire; docs/erasure.md says how operators should handle them.
"""

from __future__ import annotations

import datetime
from typing import Any

import peewee

from . import log
from .base import utcnow
from .jobs.job import JobObject, RedactionJob
from .log import LogState
from .transaction import Transaction

REWRITTEN = (Transaction, JobObject, RedactionJob)
"""The tables redaction rewrites: scrubbed records, forgotten numbers and digests."""


# When the worker runs it (models/jobs/queue.py): daily at 03:15 UTC.
SCHEDULE_HOUR, SCHEDULE_MINUTE = 3, 15


def next_maintenance(now: datetime.datetime) -> datetime.datetime:
    """The next scheduled maintenance after `now`."""
    moment = now.astimezone(datetime.UTC).replace(
        hour=SCHEDULE_HOUR, minute=SCHEDULE_MINUTE, second=0, microsecond=0
    )
    return moment if moment > now else moment + datetime.timedelta(days=1)


def vacuum_erased(db: peewee.Database) -> list[str]:
    """VACUUM (with ANALYZE) the tables redaction rewrites, so that no dead row version
    keeps a scrubbed value; returns their names ([] on SQLite, which needs none).

    Then each account whose erasure log grew since its last maintenance gets a
    `maintenance` entry: every redaction before `erased_before` (the log's size when the
    VACUUM began: committed, so no longer visible to any new transaction) is erased.

    VACUUM cannot remove a version an open transaction may still see: run it when no
    long transaction is open (the service holds none longer than a batch)."""
    if not isinstance(db, peewee.PostgresqlDatabase):
        return []
    tables = [model._meta.table_name for model in REWRITTEN]
    with db.connection_context():
        started = utcnow()
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
                for table in tables:
                    cursor.execute(f'VACUUM (ANALYZE) "{table}"')
        finally:
            connection.autocommit = autocommit
        with db.atomic():
            log.append(
                [
                    (
                        api_key,
                        "maintenance",
                        {
                            "erased_before": size,
                            "started": log.timestamp(started),
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
