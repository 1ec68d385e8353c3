"""The pooled databases the store and the key store open; on PostgreSQL, peewee's pooled
database, made to roll back quietly a transaction the server already ended."""

from __future__ import annotations

import peewee
from playhouse.db_url import connect, parse
from playhouse.pool import PooledPostgresqlDatabase


class PooledPostgres(PooledPostgresqlDatabase):
    """A transaction whose connection the server ended (a restart, a crash) is not rolled
    back: the server ended it with the session, and a `ROLLBACK` on the dead connection
    would raise "connection already closed" in place of the error the failed statement
    raised (an `OperationalError`, which the service answers with a 503)."""

    def rollback(self):
        if not self.is_closed() and self.connection().closed:
            return
        super().rollback()


def open_pooled(scheme: str, rest: str, **options) -> peewee.Database:
    """The pooled database at `scheme://rest` (sqlite or postgresql), opened with `options`
    as `playhouse.db_url.connect` opens its `+pool` schemes; PostgreSQL's as `PooledPostgres`."""
    if scheme == "postgresql":
        return PooledPostgres(**{**parse(f"{scheme}://{rest}"), **options})
    return connect(f"{scheme}+pool://{rest}", **options)
