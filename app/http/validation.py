"""Request validation against the spec's schema, with the contracts' errors.

Connexion's default JSON validator compiles the schema on every request and answers
400 with the library's words; this one compiles each schema once and raises 422
problems: a body that cannot be read is Invalid JSON; one that breaks the schema is
InvalidRequest (app/http/invalid.py: an `errors` list in plain words), or, for the
Redact API, whose upstream contract fixes its bodies, Invalid Product for a product
outside the enum and Invalid JSON for everything else. Parameters that break the schema
are InvalidParameters (400), with the same `errors` list.
"""

from __future__ import annotations

import json
import typing as t

import fastjsonschema
import jsonschema
from connexion.datastructures import MediaTypeDict
from connexion.exceptions import BadRequestProblem
from connexion.utils import is_null, is_nullable
from connexion.validators import AbstractRequestBodyValidator, ParameterValidator
from starlette.datastructures import Headers

from app.http.invalid import (
    BODY,
    FieldError,
    InvalidParameters,
    InvalidRequest,
    InvalidWebhookRequest,
    fastjsonschema_errors,
    jsonschema_errors,
)
from app.http.nul import nul_errors
from app.http.state import request_state


class InvalidJson(Exception):
    """A body the contract cannot read, or one that breaks its schema."""


class InvalidProduct(Exception):
    def __init__(self, product):
        super().__init__(f"No product corresponding to supplied string {product}!")


_COMPILED: dict[int, tuple[dict, t.Callable]] = {}
_CHECKERS: dict[int, tuple[dict, jsonschema.Draft4Validator]] = {}


def schema_errors(schema: dict, body: t.Any) -> list[FieldError]:
    """Every problem of `body` under `schema`, as the `errors` of a problem (jsonschema
    lists them all where the compiled check stops at the first; asked only once that
    check has failed)."""
    cached = _CHECKERS.get(id(schema))
    if cached is None or cached[0] is not schema:
        checker = jsonschema.Draft4Validator(openapi_to_json_schema(schema))
        cached = _CHECKERS[id(schema)] = (schema, checker)
    return jsonschema_errors(cached[1].iter_errors(body))


def compiled_validator(schema: dict) -> t.Callable:
    """The schema compiled to Python once (fastjsonschema), cached by schema object (held
    in the cache, so that its id cannot be reused by another schema)."""
    cached = _COMPILED.get(id(schema))
    if cached is None or cached[0] is not schema:
        # Draft 4, as OpenAPI 3.0 means it: 1.0 is not an integer.
        compiled = fastjsonschema.compile(
            {**openapi_to_json_schema(schema), "$schema": "http://json-schema.org/draft-04/schema#"}
        )
        cached = _COMPILED[id(schema)] = (schema, compiled)
    return cached[1]


def openapi_to_json_schema(schema: t.Any) -> t.Any:
    """An OpenAPI 3.0 schema as JSON Schema: `nullable: true` becomes a type that admits
    null (fastjsonschema does not know OpenAPI's keyword)."""
    if isinstance(schema, list):
        return [openapi_to_json_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted = {k: openapi_to_json_schema(v) for k, v in schema.items() if k != "nullable"}
    if schema.get("nullable") is True:
        if "type" in schema:
            converted["type"] = [schema["type"], "null"]
        else:
            converted = {"anyOf": [converted, {"type": "null"}]}
    return converted


def parse_json_body(raw: bytes) -> t.Any:
    """A request body as JSON, or InvalidJson saying why it cannot be read."""
    try:
        body = json.loads(raw.decode("utf-8"))
        if b"\\u" in raw:  # escapes may spell unpaired surrogates, which nothing can store
            json.dumps(body, ensure_ascii=False).encode("utf-8")
        return body
    except UnicodeDecodeError:
        raise InvalidJson("The request body is not valid UTF-8") from None
    except UnicodeEncodeError:
        raise InvalidJson("The request body escapes an unpaired surrogate") from None
    except json.JSONDecodeError as exc:
        raise InvalidJson(f"The request body is not valid JSON: {exc}") from None
    except ValueError:  # an integer beyond Python's limit on digits (4,300)
        raise InvalidJson("The request body holds a number too long to read") from None
    except RecursionError:
        raise InvalidJson("The request body is nested too deeply") from None


class ContractBodyValidator(AbstractRequestBodyValidator):
    async def wrap_receive(self, receive, *, scope):
        """Connexion takes a body without Content-Length for no body at all; a chunked body
        is read here first (the outer middleware caps its size) and given a length."""
        headers = Headers(scope=scope)
        if (
            "content-length" not in headers
            and "chunked" in headers.get("transfer-encoding", "").lower()
        ):
            body, more = b"", True
            while more:
                message = await receive()
                body += message.get("body", b"")
                more = message.get("more_body", False)
            scope = {
                **scope,
                "headers": [
                    (name, value)
                    for name, value in scope["headers"]
                    if name != b"transfer-encoding"
                ]
                + [(b"content-length", str(len(body)).encode())],
            }
            receive = self._insert_messages(
                receive, messages=[{"type": "http.request", "body": body, "more_body": False}]
            )
        try:
            return await super().wrap_receive(receive, scope=scope)
        except BadRequestProblem as exc:  # a required body is missing: the contract's 422
            raise InvalidJson(str(exc.detail)) from None

    async def _parse(self, stream: t.AsyncGenerator[bytes, None], scope) -> t.Any:
        raw = b"".join([chunk async for chunk in stream])
        if not raw and not self._required:
            return None
        body = parse_json_body(raw)
        if self.refuses_nul and (found := nul_errors(raw, body, self.left_to_domain())):
            raise self.problem(found)
        # Kept for app/http/direct.py, which answers once the body is validated (the
        # validation raises before the request goes on otherwise).
        request_state(scope).body = body
        return body

    def enforced_schema(self) -> dict:
        """The part of the operation's schema checked here."""
        return self._schema

    problem: type[InvalidRequest] = InvalidRequest
    """What a body that breaks the schema raises."""

    refuses_nul = True  # a NUL in any string of the body (app/http/nul.py)

    def left_to_domain(self) -> tuple[str, ...]:
        """Top-level members of the body the domain checks itself, NUL included."""
        return ()

    def _validate(self, body: t.Any) -> None:
        if body is None and not self._required:
            return
        if not isinstance(body, dict):
            raise self.problem([{"field": BODY, "reason": "must be a JSON object"}])
        schema = self.enforced_schema()
        try:
            compiled_validator(schema)(body)
        except fastjsonschema.JsonSchemaValueException as error:
            raise self.problem(
                schema_errors(schema, body) or fastjsonschema_errors(error)
            ) from None


class WebhooksBodyValidator(ContractBodyValidator):
    """The webhooks contract's bodies: a body that breaks the schema is an Invalid
    Webhook (docs/webhooks.md)."""

    problem = InvalidWebhookRequest


class RedactBodyValidator(ContractBodyValidator):
    """The Redact API's body, answered as the upstream contract's 422s are (their bodies
    are fixed by it): Invalid Product for a product outside the enum, Invalid JSON with
    the validator's words for anything else."""

    refuses_nul = False  # an id holding NUL is the contract's 404 (no record holds one)

    def _validate(self, body: t.Any) -> None:
        if body is None and not self._required:
            return
        if not isinstance(body, dict):
            raise InvalidJson("The request body must be a JSON object")
        try:
            compiled_validator(self.enforced_schema())(body)
        except fastjsonschema.JsonSchemaValueException as error:
            field = error.path[1] if len(error.path) > 1 else None
            if field == "product" and error.rule == "enum":
                raise InvalidProduct(error.value) from None
            if error.rule == "required" and len(error.path) == 1:
                missing = next(f for f in self._schema["required"] if f not in body)
                raise InvalidJson(f"'{missing}' is a required property") from None
            if len(error.path) > 2:  # deeper in the body: the validator's own words
                raise InvalidJson(error.message.replace("data.", "", 1)) from None
            rule = error.message.split(" ", 1)[-1]
            raise InvalidJson(f"field '{field}' {rule}" if field else rule) from None


_ENVELOPES: dict[int, tuple[dict, dict]] = {}


class RecordsBodyValidator(ContractBodyValidator):
    """The records contract's bodies: as ContractBodyValidator, but the items of a
    `records` array are left to the record schema of the domain (models/intake/schema.py),
    which names every bad record by its index and field, where this would stop at the
    first. The contract's TransactionRecord states the same rules (the contract fuzzing
    checks that the two agree, with valid and invalid records)."""

    def left_to_domain(self) -> tuple[str, ...]:
        return ("records",) if "records" in self._schema.get("properties", {}) else ()

    def enforced_schema(self) -> dict:
        cached = _ENVELOPES.get(id(self._schema))
        if cached is None or cached[0] is not self._schema:
            envelope = self._schema
            records = self._schema.get("properties", {}).get("records")
            if records is not None:
                envelope = {
                    **self._schema,
                    "properties": {
                        **self._schema["properties"],
                        "records": {**records, "items": {}},
                    },
                }
            cached = _ENVELOPES[id(self._schema)] = (self._schema, envelope)
        return cached[1]


class ContractParameterValidator(ParameterValidator):
    """Connexion's parameter validation, with every bad parameter named in the `errors`
    of one InvalidParameters (Connexion stops at the first and answers with the
    library's multi-line dump)."""

    def validate_request(self, request) -> None:
        problems: list[FieldError] = []
        if self.strict_validation:
            extra = self.validate_query_parameter_list(
                request, security_params=self.security_query_params
            )
            problems += [
                {"field": name, "reason": "is not a parameter of this operation"}
                for name in sorted(extra)
            ]
        sources = {
            "query": lambda name: request.query_params.get(name),
            "path": lambda name: request.path_params.get(name.replace("-", "_")),
            "header": lambda name: request.headers.get(name),
            "cookie": lambda name: request.cookies.get(name),
        }
        for where, read in sources.items():
            for parameter in self.parameters.get(where, []):
                problems += _parameter_errors(parameter, read(parameter["name"]))
        if problems:
            raise InvalidParameters(problems)


def _fits(bits: int) -> t.Callable[[t.Any], bool]:
    return lambda value: not isinstance(value, int) or -(2 ** (bits - 1)) <= value < 2 ** (bits - 1)


# Draft 4's formats, and OpenAPI's integer sizes (jsonschema does not know them, so that a
# query parameter beyond int64 was taken).
PARAMETER_FORMATS = jsonschema.FormatChecker(formats=())
PARAMETER_FORMATS.checkers.update(jsonschema.Draft4Validator.FORMAT_CHECKER.checkers)
for _name, _bits in (("int32", 32), ("int64", 64)):
    PARAMETER_FORMATS.checks(_name)(_fits(_bits))


def _parameter_errors(parameter: dict, value: t.Any) -> list[FieldError]:
    """The first problem of one parameter (one line per parameter), if it has one."""
    name = parameter["name"]
    if is_nullable(parameter) and is_null(value):
        return []
    if value is None:
        return [{"field": name, "reason": "is required"}] if parameter.get("required") else []
    schema = parameter.get("schema", parameter)
    checker = jsonschema.Draft4Validator(schema, format_checker=PARAMETER_FORMATS)
    return jsonschema_errors(checker.iter_errors(value), prefix=name)[:1]


def validator_map(body: type[ContractBodyValidator]) -> dict:
    """A contract's validators: its bodies checked by `body`, its parameters by
    ContractParameterValidator."""
    return {"parameter": ContractParameterValidator, "body": MediaTypeDict({"*/*json": body})}
