"""What every model shares: the one deferred database (and whether it is PostgreSQL), the
base model, UTC timestamps and the clock.

`database` is a proxy the models bind to; `models.store.state.open_store(url)` points it at
SQLite or PostgreSQL.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable

import peewee

database = peewee.DatabaseProxy()

Clock = Callable[[], datetime.datetime]
"""What tells the time: `utcnow` in service, a controlled clock in tests."""


def is_postgres(db: peewee.Database | None = None) -> bool:
    """Whether `db` (default: the database behind the proxy) is PostgreSQL; the store is
    otherwise SQLite."""
    return isinstance(database.obj if db is None else db, peewee.PostgresqlDatabase)


def utcnow() -> datetime.datetime:
    """Now, in UTC, aware."""
    return datetime.datetime.now(datetime.UTC)


class UTCDateTimeField(peewee.DateTimeField):
    """Timestamps stored naive in UTC, returned aware."""

    def db_value(self, value):
        if isinstance(value, datetime.datetime) and value.tzinfo is not None:
            value = value.astimezone(datetime.UTC).replace(tzinfo=None)
        return super().db_value(value)

    def python_value(self, value):
        value = super().python_value(value)
        if isinstance(value, datetime.datetime) and value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        return value


class BaseModel(peewee.Model):
    class Meta:
        database = database
        legacy_table_names = False


def find_owned(model, object_id: str, api_key: str | None, missing: Callable[[str], Exception]):
    """The row of `model` whose public `id` is `object_id`, of account `api_key` (None: any
    account, for operators). `missing(object_id)` is raised for an unknown id and for
    another account's, which is answered as if it did not exist, and for an id holding
    NUL (none can: PostgreSQL's text cannot hold one)."""
    if "\x00" in object_id:
        raise missing(object_id)
    where = model.id == object_id
    if api_key is not None:
        where &= model.account == api_key
    row = model.get_or_none(where)
    if row is None:
        raise missing(object_id)
    return row
