"""Handlers of the webhooks API (openapi/webhooks.yml): an account's webhook endpoints
and what was delivered to them. Each takes what Connexion validated, calls the domain
(models/webhooks/outbox.py) and shapes the answer."""

from __future__ import annotations

from collections.abc import Callable

from models.store.base import Clock
from models.webhooks.endpoints import (
    create_webhook,
    delete_webhook,
    find_webhook,
    list_webhooks,
    webhook_resource,
)
from models.webhooks.outbox import delivery_resource, list_deliveries

WEBHOOKS_PATH = "/v1/redact/webhooks"


class WebhooksApi:
    def __init__(self, clock: Clock):
        self.clock = clock

    def operations(self) -> dict[str, Callable]:
        return {
            "create-webhook": self.create,
            "list-webhooks": self.list,
            "retrieve-webhook": self.retrieve,
            "delete-webhook": self.delete,
            "list-webhook-deliveries": self.deliveries,
        }

    def create(self, body: dict, token_info: dict):
        endpoint = create_webhook(
            api_key=token_info["sub"],
            url=body["url"],
            events=body["events"],
            description=body.get("description"),
            now=self.clock(),
        )
        return webhook_resource(endpoint, secret=True), 201

    def list(
        self,
        token_info: dict,
        limit: int = 10,
        starting_after: str | None = None,
        ending_before: str | None = None,
    ):
        page = list_webhooks(
            token_info["sub"],
            limit=limit,
            starting_after=starting_after,
            ending_before=ending_before,
        )
        data = [webhook_resource(endpoint) for endpoint in page.items]
        return {"object": "list", "url": WEBHOOKS_PATH, "has_more": page.has_more, "data": data}

    def retrieve(self, webhook: str, token_info: dict):
        return webhook_resource(find_webhook(webhook, token_info["sub"]))

    def delete(self, webhook: str, token_info: dict):
        delete_webhook(webhook, token_info["sub"])
        return None, 204

    def deliveries(
        self,
        webhook: str,
        token_info: dict,
        limit: int = 10,
        starting_after: str | None = None,
        ending_before: str | None = None,
    ):
        endpoint = find_webhook(webhook, token_info["sub"])
        page = list_deliveries(
            endpoint, limit=limit, starting_after=starting_after, ending_before=ending_before
        )
        data = [delivery_resource(event) for event in page.items]
        return {
            "object": "list",
            "url": f"{WEBHOOKS_PATH}/{endpoint.id}/deliveries",
            "has_more": page.has_more,
            "data": data,
        }
