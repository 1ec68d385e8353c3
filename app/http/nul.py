"""The NUL character in request bodies: no contract's body may hold one in any string (a
value or a key), since PostgreSQL's text cannot store it. The contracts say so field by
field (`pattern: '^[^\\u0000]*$'`); this one check, run on every JSON body but the Redact
API's (whose upstream contract fixes its answers), makes it hold for every field, named
in the contract or not, on SQLite as on PostgreSQL.
"""

from __future__ import annotations

import typing as t

from app.http.invalid import FieldError, join_path

NUL_REASON = "must not contain a NUL character"

_ESCAPED_NUL = b"\\u0000"
"""How a NUL reaches us in JSON: a raw control character is not JSON, so a body without
this text holds none (one with it may still hold none: an escaped backslash before it)."""


def nul_errors(raw: bytes, body: t.Any, skip: t.Collection[str] = ()) -> list[FieldError]:
    """One item per string of `body` (parsed from `raw`) that holds a NUL, in the body's
    order; the members of a top-level object named in `skip` are left to whoever checks
    them (the records API's records, checked by the domain's schema)."""
    if _ESCAPED_NUL not in raw:
        return []
    found: list[FieldError] = []
    _walk(body, [], found, skip)
    return found


def _walk(value: t.Any, path: list, found: list[FieldError], skip: t.Collection[str]) -> None:
    if isinstance(value, str):
        if "\x00" in value:
            found.append({"field": join_path("", path), "reason": NUL_REASON})
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _walk(item, [*path, index], found, ())
    elif isinstance(value, dict):
        for name, item in value.items():
            if "\x00" in name:
                found.append({"field": join_path("", [*path, name]), "reason": NUL_REASON})
            elif not (path == [] and name in skip):
                _walk(item, [*path, name], found, ())
