"""Queries whose SQL is generated once and run many times with new values."""

from __future__ import annotations

import itertools
import re
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import peewee

from models.store.base import database

SERVER_PREPARED_MAX_PARAMS = 1024
"""On PostgreSQL, statements with at most this many values are prepared on the server once
per connection; for larger ones (a job's batch) parsing and planning cost little next to
running them, and a prepared plan would hold the server's memory for as long as the
connection lives."""

_PLACEHOLDER = re.compile(r"%%|%s")
_names = itertools.count()
_prepared_on: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""The names prepared on each PostgreSQL connection (a prepared statement lives as long
as its session, through rollbacks)."""


class PreparedQuery:
    """A peewee query whose SQL is generated once per kind of database and shape, then
    run with new values.

    Generating SQL costs far more CPU than running it on a few indexed rows, and in a
    batch it would be spent while holding the write lock. `build(mark, shape)` returns the
    query for a shape (e.g. a batch size), using `mark(*name)` in place of each value; the
    marks are found among the generated parameters, and `execute(shape, values)` puts the
    values in their places, already converted for the database (no field converts them):
    `mark("now")` takes `values["now"]`, `mark("id", i)` takes `values["id"][i]` and
    `mark("rows", i, j)` takes `values["rows"][i][j]`.
    """

    def __init__(self, build: Callable[[Callable[..., Any], Any], peewee.Query]):
        self._build = build
        self._compiled: dict[tuple[type, Any], tuple[str, list, _ServerSide | None]] = {}

    def execute(self, shape: Any, values: dict, after: Sequence[Statement] = ()):
        """Run on the current database; returns the cursor. `after`: statements whose
        results are not needed, run first (on PostgreSQL in the same round trip)."""
        return run_together([*after, self.statement(shape, values)])

    def statement(self, shape: Any, values: dict) -> Statement:
        """The statement `execute` would run, as (SQL, parameters) for the current
        database's connection (on PostgreSQL, prepared on it first if it was not)."""
        db = database.obj
        # The SQL depends on the dialect (quoting, placeholders), i.e. the database's class.
        compiled = self._compiled.get((type(db), shape))
        if compiled is None:
            compiled = self._compiled[(type(db), shape)] = self._compile(shape, db)
        sql, segments, server_side = compiled
        params: list = []
        for kind, name, extra in segments:
            if kind == "constant":
                params.append(extra)
            elif kind == "value":
                params.append(values[name])
            elif kind == "item":
                params.append(values[name][extra])
            elif kind == "items":  # the whole sequence values[name], in order
                params.extend(values[name])
            elif kind == "rows":  # every row of values[name], row by row
                params.extend(itertools.chain.from_iterable(values[name]))
            else:  # "cell": one value of a table
                params.append(values[name[0]][name[1]][name[2]])
        if server_side is not None:
            return server_side.prepared_on(db), params
        return sql, params

    def _compile(self, shape: Any, db: peewee.Database) -> tuple[str, list, _ServerSide | None]:
        marks: dict[str, tuple] = {}

        def mark(*name) -> peewee.Value:
            marker = f"@@param{len(marks)}@@"
            marks[marker] = name
            return peewee.Value(marker, converter=False)  # no field converts the marker

        sql, params = self._build(mark, shape).sql()
        slots = [(marks.get(p) if isinstance(p, str) else None, p) for p in params]
        if len({name for name, _ in slots if name}) != len(marks):
            raise ValueError("a marked value was converted; pass it pre-converted")
        server_side = None
        if isinstance(db, peewee.PostgresqlDatabase) and len(params) <= SERVER_PREPARED_MAX_PARAMS:
            server_side = _ServerSide(sql)
        return sql, _segments(slots), server_side


class _ServerSide:
    """A statement prepared on each PostgreSQL connection the first time it runs there,
    then run by name: the server parses, analyses and plans it once per connection
    instead of once per run (those steps were ~38% of the server's CPU under a load of
    redactions, most of it for statements of a few rows; bench/README.md)."""

    def __init__(self, sql: str):
        self.name = f"redact_q{next(_names)}"
        count = 0

        def numbered(match: re.Match) -> str:
            nonlocal count
            if match.group() == "%%":  # a literal %: left as the driver expects it
                return "%%"
            count += 1
            return f"${count}"

        self.prepare = f"PREPARE {self.name} AS {_PLACEHOLDER.sub(numbered, sql)}"
        self.run = f"EXECUTE {self.name}" + (f" ({', '.join(['%s'] * count)})" if count else "")

    def prepared_on(self, db: peewee.Database) -> str:
        """The SQL that runs the statement on `db`'s connection, prepared there first."""
        connection = db.connection()
        prepared = _prepared_on.get(connection)
        if prepared is None:
            prepared = _prepared_on[connection] = set()
        if self.name not in prepared:
            db.execute_sql(self.prepare)
            prepared.add(self.name)
        return self.run


Statement = tuple[str, list]
"""SQL for the current database, with its parameters."""


def run_together(statements: Sequence[Statement]):
    """Run `statements` in order on the current database; the last one's cursor. On
    PostgreSQL they go in one round trip (a string of statements, each with a snapshot
    of its own as if sent alone), which under load costs a writer a wait for the server
    and then for a core each time."""
    db = database.obj
    if len(statements) > 1 and isinstance(db, peewee.PostgresqlDatabase):
        sql = "; ".join(sql for sql, _ in statements)
        return db.execute_sql(sql, [p for _, params in statements for p in params])
    cursor = None
    for sql, params in statements:
        cursor = db.execute_sql(sql, params)
    return cursor


def _segments(slots: list[tuple]) -> list[tuple]:
    """The parameters as runs to copy: a constant, one value, or a whole sequence or
    table of values when its marks appear in order (as a batch's VALUES or IN list)."""
    segments: list[tuple] = []
    index = 0
    while index < len(slots):
        name, constant = slots[index]
        if name is None:
            segments.append(("constant", None, constant))
            index += 1
        elif len(name) == 1:
            segments.append(("value", name[0], None))
            index += 1
        elif len(name) == 2:
            run = 0
            while index + run < len(slots) and slots[index + run][0] == (name[0], run):
                run += 1
            if name[1] == 0 and run > 1:
                segments.append(("items", name[0], run))
                index += run
            else:
                segments.append(("item", name[0], name[1]))
                index += 1
        elif name[1:] == (0, 0):
            width = 0
            while index + width < len(slots) and slots[index + width][0] == (name[0], 0, width):
                width += 1
            rows = 0
            while all(
                index + rows * width + c < len(slots)
                and slots[index + rows * width + c][0] == (name[0], rows, c)
                for c in range(width)
            ):
                rows += 1
            segments.append(("rows", name[0], rows * width))
            index += rows * width
        else:
            segments.append(("cell", name, None))
            index += 1
    return segments


def statement_sizes(count: int, largest: int = 512) -> list[int]:
    """`count` as statement sizes that are powers of two (at most `largest`): a handful of
    shapes, each prepared once."""
    sizes = []
    while count:
        size = min(largest, 1 << (count.bit_length() - 1))
        sizes.append(size)
        count -= size
    return sizes
