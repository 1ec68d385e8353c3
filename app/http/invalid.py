"""Validation failures in words a person reads once.

Every contract's schema failures are answered with an `errors` list, one item per
problem: `{"field": "records[3].product", "reason": "must be one of: sms, voice"}`.
`field_error` turns what a validator reports (a keyword of the schema, what it asked for,
the value it was given) into such an item, whichever validator reported it: jsonschema
(query parameters, and the full list of a body's problems), fastjsonschema (the compiled
check of a body) or the record schema of the domain (marshmallow, `records_errors`).
Reasons name no regular expression and no Python value: a list of choices is written
out; a pattern, or a value that fits none of a schema's forms, is told what the schema's
description says it is ("must be a phone number, ..."), else the prefix of an id or only
that it is not in the expected form.
"""

from __future__ import annotations

import json
import re
import typing as t
from collections.abc import Iterable, Sequence

import fastjsonschema
import jsonschema
from jsonschema.exceptions import best_match

from models import errors

FieldError = dict[str, str]

BODY = "body"
"""The field named when the body as a whole is wrong (not an object, say)."""


MAX_LISTED = 100
"""The most problems an `errors` list names (the detail says how many there were)."""


class InvalidRequest(Exception):
    """A request body that is JSON but breaks its contract's schema: `errors` says where
    and why (the first MAX_LISTED problems)."""

    def __init__(self, field_errors: list[FieldError]):
        self.errors = field_errors[:MAX_LISTED]
        super().__init__(summary(field_errors, "The request body"))


class InvalidWebhookRequest(InvalidRequest):
    """As InvalidRequest, for the webhooks contract, whose documented type is
    `invalid-webhook`."""


class InvalidParameters(Exception):
    """Parameters (query, path, header) that break the operation's schema."""

    def __init__(self, field_errors: list[FieldError]):
        self.errors = field_errors[:MAX_LISTED]
        super().__init__(summary(field_errors, "The request's parameters"))


def summary(field_errors: Sequence[FieldError], what: str) -> str:
    """A one-line detail: the first problem, and how many more the `errors` list holds."""
    if not field_errors:
        return f"{what} breaks the contract"
    first = field_errors[0]
    where = what if first["field"] == BODY else f"{what}: {first['field']}"
    line = f"{where} {first['reason']}"
    if len(field_errors) > 1:
        more = len(field_errors) - 1
        line += f" (and {more} more {'problem' if more == 1 else 'problems'}, see errors)"
    return " ".join(line.split())


def join_path(prefix: str, path: Iterable[str | int]) -> str:
    """`records`, [3, 'product'] as `records[3].product`."""
    field = prefix
    for part in path:
        if isinstance(part, int):
            field += f"[{part}]"
        else:
            field = f"{field}.{part}" if field else str(part)
    return field


def _words(value: t.Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


_TYPES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "object": "an object",
    "array": "an array",
    "null": "null",
}


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def field_error(
    field: str, keyword: str, expected: t.Any, value: t.Any, schema: dict
) -> list[FieldError]:
    """The items for one failure of `keyword` (asking for `expected`, in `schema`) at
    `field`, given `value`. `required` and `additionalProperties` name each property."""
    if keyword == "required":
        present = value if isinstance(value, dict) else {}
        missing = [name for name in expected if name not in present]
        return [{"field": join_path(field, [name]), "reason": "is required"} for name in missing]
    if keyword == "additionalProperties" and isinstance(value, dict):
        known = schema.get("properties", {})
        extra = [name for name in value if name not in known]
        return [
            {"field": join_path(field, [name]), "reason": "is not allowed here"} for name in extra
        ]
    return [{"field": field or BODY, "reason": _reason(keyword, expected, value, schema)}]


def _reason(keyword: str, expected: t.Any, value: t.Any, schema: dict) -> str:
    if keyword == "enum":
        return "must be one of: " + ", ".join(_words(choice) for choice in expected)
    if keyword == "const":
        return f"must be {_words(expected)}"
    if keyword == "type":
        kinds = [expected] if isinstance(expected, str) else list(expected)
        return "must be " + " or ".join(_TYPES.get(kind, kind) for kind in kinds)
    if keyword == "minLength":
        return "must not be empty" if expected == 1 else f"must be at least {expected} characters"
    if keyword == "maxLength":
        return f"must be at most {_plural(expected, 'character')}"
    if keyword in ("minimum", "exclusiveMinimum"):
        strict = keyword == "exclusiveMinimum" or schema.get("exclusiveMinimum") is True
        bound = schema.get("minimum", expected)
        return f"must be greater than {bound}" if strict else f"must be at least {bound}"
    if keyword in ("maximum", "exclusiveMaximum"):
        strict = keyword == "exclusiveMaximum" or schema.get("exclusiveMaximum") is True
        bound = schema.get("maximum", expected)
        return f"must be less than {bound}" if strict else f"must be at most {bound}"
    if keyword == "minItems":
        return "must not be empty" if expected == 1 else f"must hold at least {expected} items"
    if keyword == "maxItems":
        return f"must hold at most {_plural(expected, 'item')}"
    if keyword == "uniqueItems":
        return "must not name the same item twice"
    if keyword == "minProperties":
        return "must not be empty"
    if keyword == "maxProperties":
        return f"must have at most {_plural(expected, 'member')}"
    if keyword == "multipleOf":
        return f"must be a multiple of {expected}"
    if keyword == "format" and expected in ("int32", "int64"):
        bits = int(expected[3:])
        if isinstance(value, int) and value < 0:
            return f"must be at least {-(2 ** (bits - 1))}"
        return f"must be at most {2 ** (bits - 1) - 1}"
    if keyword == "format":
        return f"must be a valid {expected}"
    if keyword == "pattern":
        return _form(schema)
    if keyword in ("anyOf", "oneOf"):
        return _described(schema) or "does not match any of the accepted forms"
    if keyword == "additionalProperties":
        return "is not allowed here"
    return "is not valid here"


def _described(schema: dict) -> str | None:
    """ "must be <the schema's description>", when that names a kind of value ("A phone
    number ...") in a few words."""
    description = " ".join(str(schema.get("description", "")).split())
    if description[:2] in ("A ", "An") and len(description) <= 100:
        return f"must be {description[0].lower()}{description[1:].rstrip('.')}"
    return None


def _form(schema: dict) -> str:
    """What a pattern asks for, in words: the schema's description, the prefix of an
    id, or only that it is wrong."""
    described = _described(schema)
    if described:
        return described
    pattern = str(schema.get("pattern", ""))
    prefix = re.match(r"\^([a-z]+_)", pattern)
    if prefix:
        return f"must be an id starting with {prefix.group(1)}"
    if pattern == r"^[^\u0000]*$":
        return "must not contain a NUL character"
    return "is not in the expected form"


def jsonschema_errors(
    found: Iterable[jsonschema.ValidationError], prefix: str = ""
) -> list[FieldError]:
    """The items for what jsonschema found, `prefix` naming the value validated (a
    parameter's name; the body's fields need none): one per field, its first problem."""
    found = list(found)
    combinators = ("anyOf", "oneOf")
    named = [tuple(e.absolute_path) for e in found if e.validator not in combinators]
    items: list[FieldError] = []
    for error in found:
        if error.validator in combinators:
            path = tuple(error.absolute_path)
            if any(other[: len(path)] == path for other in named):
                continue  # what is wrong there is said already, more precisely
            if error.context and not _described(error.schema):
                error = best_match(error.context)  # what the closest form lacks
        items += field_error(
            join_path(prefix, error.absolute_path),
            str(error.validator),
            error.validator_value,
            error.instance,
            error.schema if isinstance(error.schema, dict) else {},
        )
    firsts: dict[str, FieldError] = {}
    for item in items:
        firsts.setdefault(item["field"], item)
    return list(firsts.values())


def fastjsonschema_errors(error: fastjsonschema.JsonSchemaValueException) -> list[FieldError]:
    """The items for the (first) failure the compiled check found."""
    # Its first step is the whole value ("data"); it spells array indexes as strings.
    path = [int(p) if p.isdigit() else p for p in map(str, list(error.path or [])[1:])]
    return field_error(
        join_path("", path),
        str(error.rule),
        error.rule_definition,
        error.value,
        error.definition if isinstance(error.definition, dict) else {},
    )


# marshmallow's default messages (the record schema's own are plain words already).
_MARSHMALLOW = {
    "Missing data for required field": "is required",
    "Field may not be null": "must not be null",
    "Not a valid string": "must be a string",
    "Not a valid datetime": "must be a date and time",
    "Not a valid integer": "must be an integer",
    "Unknown field": "is not allowed here",
    "Invalid input type": "must be an object",
    "Not a valid aware datetime": "must be a date and time with its time zone",
    "Not a valid utf-8 string": "must be a string",
    "Invalid value": "is not valid here",
    "a record must be a JSON object": "must be a JSON object",
}


def plain_message(message: str) -> str:
    """A record schema message as a reason: marshmallow's defaults reworded, the rest
    lowercased at the start, without a closing period."""
    message = message.rstrip(".")
    if message in _MARSHMALLOW:
        return _MARSHMALLOW[message]
    if message.startswith("Must be one of: "):
        return "must be one of: " + message.removeprefix("Must be one of: ")
    if message.startswith("Length must be between "):
        low, high = message.removeprefix("Length must be between ").split(" and ")
        return f"must be {low} to {high} characters"
    return message[:1].lower() + message[1:]


def records_errors(exc: Exception) -> dict:
    """The members a problem about records adds: `count`, and `errors` naming each
    record by its place in `records`."""
    invalid = t.cast(errors.InvalidRecords, exc)
    return {
        "count": invalid.count,
        "errors": [
            {
                "field": join_path(f"records[{index}]", [field] if field else []),
                "reason": plain_message(message),
            }
            for index, field, message in invalid.errors
        ],
    }


def media_type_detail(detail: str) -> str:
    """Connexion's detail for a content type an operation does not take, without the
    Python list it ends in."""
    found = re.match(r"Invalid Content-type \((.*)\), expected \[(.*)\]$", detail)
    if found is None:
        return detail
    expected = ", ".join(kind.strip(" '\"") for kind in found[2].split(","))
    return f"Content-type {found[1] or 'none'} is not accepted here: send {expected}"


def listed_errors(exc: Exception) -> dict:
    """The `errors` member of InvalidRequest and InvalidParameters."""
    return {"errors": t.cast(InvalidRequest, exc).errors}
