"""Checks a response against a contract in openapi/: documented status, exact body shape."""

from __future__ import annotations

import functools
import pathlib

import jsonschema
import yaml

from app.validation import openapi_to_json_schema

SPEC_DIR = pathlib.Path(__file__).resolve().parent.parent / "openapi"


@functools.cache
def spec(name: str = "redact.yml") -> dict:
    return yaml.safe_load((SPEC_DIR / name).read_text())


def _resolve(document: dict, node: dict) -> dict:
    while "$ref" in node:
        node = functools.reduce(dict.__getitem__, node["$ref"][2:].split("/"), document)
    return node


def assert_matches_contract(
    response, path: str = "/transaction", method: str = "post", spec_name: str = "redact.yml"
):
    """The response's status is one the operation documents and its body matches that
    status's schema; returns the parsed body (None if the contract says no content)."""
    document = spec(spec_name)
    responses = document["paths"][path][method]["responses"]
    status = str(response.status_code)
    assert status in responses, f"status {status} is not in the contract"
    content = _resolve(document, responses[status]).get("content")
    if content is None:
        assert response.content == b"", "a response without content in the contract has a body"
        return None
    assert response.headers["content-type"].startswith("application/json")
    schema = openapi_to_json_schema(
        {**content["application/json"]["schema"], "components": document["components"]}
    )
    body = response.json()
    jsonschema.Draft4Validator(schema).validate(body)
    return body


def assert_job_contract(response, path: str, method: str):
    return assert_matches_contract(response, path, method, "jobs.yml")
