"""Request-body validation against the spec's schema, with the contract's errors.

Connexion's default JSON validator compiles the schema on every request and answers
400; this one compiles each schema once and raises the contract's 422 problems:
Invalid Product for a product outside the enum, Invalid JSON for everything else.
"""

from __future__ import annotations

import json
import typing as t

import fastjsonschema
from connexion.exceptions import BadRequestProblem
from connexion.validators import AbstractRequestBodyValidator
from starlette.datastructures import Headers

from app.http.state import request_state


class InvalidJson(Exception):
    """A body the contract cannot read, or one that breaks its schema."""


class InvalidProduct(Exception):
    def __init__(self, product):
        super().__init__(f"No product corresponding to supplied string {product}!")


_COMPILED: dict[int, tuple[dict, t.Callable]] = {}


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
        # Kept for app/http/direct.py, which answers once the body is validated (the
        # validation raises before the request goes on otherwise).
        request_state(scope).body = body
        return body

    def enforced_schema(self) -> dict:
        """The part of the operation's schema checked here."""
        return self._schema

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
