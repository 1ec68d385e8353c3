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

import peewee

from .jobs.job import JobObject, RedactionJob
from .transaction import Transaction

REWRITTEN = (Transaction, JobObject, RedactionJob)
"""The tables redaction rewrites: scrubbed records, forgotten numbers and digests."""


def vacuum_erased(db: peewee.Database) -> list[str]:
    """VACUUM (with ANALYZE) the tables redaction rewrites, so that no dead row version
    keeps a scrubbed value; returns their names ([] on SQLite, which needs none).

    VACUUM cannot remove a version an open transaction may still see: run it when no
    long transaction is open (the service holds none longer than a batch)."""
    if not isinstance(db, peewee.PostgresqlDatabase):
        return []
    tables = [model._meta.table_name for model in REWRITTEN]
    with db.connection_context():
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
    return tables
