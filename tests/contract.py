"""Checks a response against openapi/redact.yml: documented status, exact body shape."""

from __future__ import annotations

import functools
import pathlib

import jsonschema
import yaml

SPEC = pathlib.Path(__file__).resolve().parent.parent / "openapi" / "redact.yml"


@functools.cache
def spec() -> dict:
    return yaml.safe_load(SPEC.read_text())


def assert_matches_contract(response, path: str = "/transaction", method: str = "post"):
    responses = spec()["paths"][path][method]["responses"]
    status = str(response.status_code)
    assert status in responses, f"status {status} is not in the contract"
    content = responses[status].get("content")
    if content is None:
        assert response.content == b"", "a response without content in the contract has a body"
        return None
    assert response.headers["content-type"].startswith("application/json")
    schema = {**content["application/json"]["schema"], "components": spec()["components"]}
    body = response.json()
    jsonschema.Draft4Validator(schema).validate(body)
    return body
