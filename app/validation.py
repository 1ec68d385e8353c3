"""Request-body validation against the spec's schema, with the contract's errors.

Connexion's default JSON validator compiles the schema on every request and answers
400; this one compiles each schema once and raises the contract's 422 problems:
Invalid Product for a product outside the enum, Invalid JSON for everything else.
"""

from __future__ import annotations

import json
import typing as t

import jsonschema
from connexion.validators import AbstractRequestBodyValidator
from starlette.datastructures import Headers

from .problems import InvalidJson, InvalidProduct

_COMPILED: dict[int, jsonschema.protocols.Validator] = {}


def _validator_for(schema: dict):
    compiled = _COMPILED.get(id(schema))
    if compiled is None:
        compiled = _COMPILED[id(schema)] = jsonschema.Draft4Validator(schema)
    return compiled


class ContractBodyValidator(AbstractRequestBodyValidator):
    async def wrap_receive(self, receive, *, scope):
        """Connexion takes a body without Content-Length for no body at all; a chunked body
        is read here first (the outer middleware caps its size) and given a length."""
        headers = Headers(scope=scope)
        if "content-length" not in headers and "chunked" in headers.get(
            "transfer-encoding", ""
        ).lower():
            body, more = b"", True
            while more:
                message = await receive()
                body += message.get("body", b"")
                more = message.get("more_body", False)
            scope = {**scope, "headers": [
                (name, value) for name, value in scope["headers"]
                if name != b"transfer-encoding"
            ] + [(b"content-length", str(len(body)).encode())]}
            receive = self._insert_messages(
                receive, messages=[{"type": "http.request", "body": body, "more_body": False}]
            )
        return await super().wrap_receive(receive, scope=scope)

    async def _parse(self, stream: t.AsyncGenerator[bytes, None], scope) -> t.Any:
        raw = b"".join([chunk async for chunk in stream])
        try:
            return json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise InvalidJson("The request body is not valid UTF-8") from None
        except json.JSONDecodeError as exc:
            raise InvalidJson(f"The request body is not valid JSON: {exc}") from None
        except RecursionError:
            raise InvalidJson("The request body is nested too deeply") from None

    def _validate(self, body: t.Any) -> None:
        if not isinstance(body, dict):
            raise InvalidJson("The request body must be a JSON object")
        error = next(iter(_validator_for(self._schema).iter_errors(body)), None)
        if error is None:
            return
        field = error.path[0] if error.path else None
        if field == "product" and error.validator == "enum":
            raise InvalidProduct(error.instance)
        where = f" (field '{field}')" if field else ""
        raise InvalidJson(f"{error.message}{where}")
