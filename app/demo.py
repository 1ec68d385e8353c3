"""Demo data for the quickstart: one account and a few records old enough to redact."""

from __future__ import annotations

import datetime
import json

from models import Account, Transaction, database, load_records

API_KEY = "demo0001"
API_SECRET = "demo-secret-0001"


def demo_records(now: datetime.datetime) -> list[dict]:
    old = (now - datetime.timedelta(hours=2)).isoformat()
    recent = (now - datetime.timedelta(minutes=5)).isoformat()
    base = {"api_key": API_KEY, "created_at": old, "from": "447700900001", "to": "447700900002"}
    return [
        {
            **base,
            "id": "0A0000000DEMO0001",
            "product": "sms",
            "type": "outbound",
            "text": "Your code is 1234",
            "status": "delivered",
            "price": "0.0333",
        },
        {**base, "id": "0A0000000DEMO0002", "product": "sms", "type": "inbound", "text": "STOP"},
        {
            **base,
            "id": "0A0000000DEMO0003",
            "product": "sms",
            "type": "outbound",
            "text": "Too new to redact",
            "created_at": recent,
        },
        {
            **base,
            "id": "63f61863-4a51-4f6b-86e1-46edebcf9356",
            "product": "voice",
            "duration": "42",
        },
        {
            **base,
            "id": "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee",
            "product": "number-insight",
            "owner_name": "Jane Doe",
        },
        {**base, "id": "d1e2a3d4b5e6e7f8a9b0c1d2e3f4a5b6", "product": "verify"},
        {
            **base,
            "id": "aaaaaaaa-0000-4000-8000-000000000001",
            "product": "messages",
            "text": "See you at 6",
            "channel": "whatsapp",
        },
    ]


def seed_demo(now: datetime.datetime) -> None:
    """Create the demo account and records unless they exist."""
    with database.atomic():
        if Account.get_or_none(Account.api_key == API_KEY) is None:
            Account.register(API_KEY, API_SECRET)
        records = [
            r
            for r in demo_records(now)
            if Transaction.get_or_none(Transaction.id == r["id"]) is None
        ]
        load_records(json.dumps(r) for r in records)


def curl_line(base_url: str) -> str:
    return (
        f"curl -i -u {API_KEY}:{API_SECRET} -H 'Content-Type: application/json' "
        f'-d \'{{"id": "0A0000000DEMO0001", "product": "sms", "type": "outbound"}}\' '
        f"{base_url}/v1/redact/transaction"
    )
