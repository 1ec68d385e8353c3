"""A record's personal fields as the store holds them: sealed (models/store/sealing.py)
under the record's own data key, each bound to its account, record and field.

Sealed: the sender, recipient and text, and every product-specific detail the product's
scrub policy does not declare kept (its value as JSON). Kept details stay readable (they
are not personal). A record whose key is destroyed reads as redacted: nothing of it can
be opened, from the live store or from any copy.
"""

from __future__ import annotations

import json
import os
from typing import Any

from models.records.products import POLICIES, REDACTED
from models.store.sealing import NONCE_BYTES, Sealer, place

# The columns sealed, and the name each has in the records contract (the associated data).
SEALED_COLUMNS = {"sender": "from", "recipient": "to", "body": "text"}


def seal_fields(
    key: bytes, api_key: str, record_id: str, product: str, sender, recipient, body, details
) -> tuple[str | None, str | None, str | None, dict | None]:
    """(sender, recipient, body, details) sealed under `key`; None stays None."""
    sealer = Sealer(key)
    nonces = os.urandom(NONCE_BYTES * len(SEALED_COLUMNS))  # one read, a nonce a field
    values = []
    for index, (name, value) in enumerate(
        zip(SEALED_COLUMNS.values(), (sender, recipient, body), strict=True)
    ):
        nonce = nonces[index * NONCE_BYTES : (index + 1) * NONCE_BYTES]
        values.append(
            None if value is None else sealer.seal(place(api_key, record_id, name), value, nonce)
        )
    if details:
        kept = POLICIES[product].kept_details
        details = {
            k: v
            if k in kept
            else sealer.seal(
                place(api_key, record_id, f"details.{k}"),
                json.dumps(v, ensure_ascii=False, separators=(",", ":")),
            )
            for k, v in details.items()
        }
    return values[0], values[1], values[2], details


def open_fields(
    key: bytes | None, api_key: str, record_id: str, product: str, sender, recipient, body, details
) -> tuple[Any, Any, Any, dict | None]:
    """The fields `seal_fields` sealed, opened; with no key (destroyed), or a field that
    does not open under it, each reads REDACTED."""
    sealer = Sealer(key) if key is not None else None
    values = []
    for name, value in zip(SEALED_COLUMNS.values(), (sender, recipient, body), strict=True):
        values.append(_open(sealer, place(api_key, record_id, name), value))
    if details:
        kept = POLICIES[product].kept_details
        opened = {}
        for k, v in details.items():
            if k in kept:
                opened[k] = v
                continue
            text = _open(sealer, place(api_key, record_id, f"details.{k}"), v)
            opened[k] = REDACTED if text is REDACTED else json.loads(text)
        details = opened
    return values[0], values[1], values[2], details


def seal_row(row: dict, key: bytes) -> tuple:
    """`seal_fields` of a row as the intake reads it (account, id, product, sender, ...)."""
    return seal_fields(key, *_fields(row))


def open_row(row: dict, key: bytes | None) -> None:
    """`open_fields` of a stored row (as the intake reads it), in place."""
    row["sender"], row["recipient"], row["body"], row["details"] = open_fields(key, *_fields(row))


def _fields(row: dict) -> tuple:
    return (
        row["account"],
        row["id"],
        row["product"],
        row["sender"],
        row["recipient"],
        row["body"],
        row["details"],
    )


def _open(sealer: Sealer | None, where: bytes, value):
    if value is None:
        return None
    if sealer is None or not isinstance(value, str):
        return REDACTED
    text = sealer.open(where, value)
    return REDACTED if text is None else text
