"""The API documentation: Swagger UI for the contracts at /v1/redact/ui/ (Connexion's
swagger-ui extra), where `GET /` redirects, and the documents it shows, served here with
their `servers` pointing at this service so that "Try it out" calls it."""

from __future__ import annotations

import functools

import yaml
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse

from app.http.contracts import BASE_PATH, SPEC_DIR

PAGE = f"{BASE_PATH}/ui/"
"""The documentation page: Swagger UI, with a picker for the contracts."""
DOCUMENTS = {
    f"{BASE_PATH}/openapi.json": ("redact.yml", "Redact API"),
    f"{BASE_PATH}/jobs-openapi.json": ("jobs.yml", "Redaction jobs"),
    f"{BASE_PATH}/records-openapi.json": ("records.yml", "Records, retention and holds"),
    f"{BASE_PATH}/proof-openapi.json": ("proof.yml", "Proof of erasure"),
    f"{BASE_PATH}/webhooks-openapi.json": ("webhooks.yml", "Webhooks"),
}
PICKER = [{"name": name, "url": url} for url, (_, name) in DOCUMENTS.items()]


@functools.cache
def document(spec_name: str) -> dict:
    spec = yaml.safe_load((SPEC_DIR / spec_name).read_text())
    return {**spec, "servers": [{"url": BASE_PATH}]}


def register(app) -> None:
    async def home(request: Request) -> RedirectResponse:
        return RedirectResponse(PAGE, status_code=307)

    app.add_url_rule("/", "home", home, methods=["GET"])
    for url, (spec_name, _) in DOCUMENTS.items():

        async def serve(request: Request, spec_name: str = spec_name) -> JSONResponse:
            return JSONResponse(document(spec_name))

        app.add_url_rule(url, f"document:{spec_name}", serve, methods=["GET"])
