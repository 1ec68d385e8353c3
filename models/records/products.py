"""What redaction scrubs, declared once per product.

Each transaction keeps its identity, account, product, direction and timestamps; every
other field it holds is personal unless the product's policy lists it as kept. Scrubbed
fields are overwritten with `REDACTED`, and the record stays (billing needs it).
"""

from __future__ import annotations

import dataclasses

REDACTED = "REDACTED"

PRODUCTS = ("sms", "voice", "number-insight", "verify", "verify-sdk", "messages")
DIRECTIONS = ("outbound", "inbound")


@dataclasses.dataclass(frozen=True)
class ScrubPolicy:
    product: str
    record_kind: str
    """How a 404 names the record: MT/MO for SMS, the product otherwise."""
    kept_details: frozenset[str]
    """Product-specific fields declared not personal; all others are scrubbed."""


_COMMON_KEPT = frozenset(
    {
        "status",
        "price",
        "currency",
        "network",
        "network_name",
        "country",
        "country_code",
        "error_code",
        "client_ref",
        "account_ref",
        "message_type",
        "channel",
        "duration",
        "rate",
        "start_time",
        "end_time",
        "finalized",
    }
)

POLICIES = {
    p.product: p
    for p in (
        # Each comment: what the product's records usually carry, as Vonage documents the scope.
        ScrubPolicy("sms", "MT", _COMMON_KEPT),  # message text and both numbers
        ScrubPolicy("voice", "voice", _COMMON_KEPT),  # both numbers
        ScrubPolicy("number-insight", "number-insight", _COMMON_KEPT),  # number, owner details
        ScrubPolicy("verify", "verify", _COMMON_KEPT),  # the number
        ScrubPolicy("verify-sdk", "verify-sdk", _COMMON_KEPT),  # the number
        ScrubPolicy("messages", "messages", _COMMON_KEPT),  # both numbers and content
    )
}


def direction_of(product: str, type_: str | None) -> str | None:
    """The direction a record of `product` is stored under: an SMS is outbound unless
    `type_` says inbound; other products have none."""
    if product != "sms":
        return None
    return type_ or "outbound"


def record_kind(product: str, direction: str | None) -> str:
    """The kind a 404 detail names: MT (outbound SMS), MO (inbound SMS), else the product."""
    if product == "sms":
        return "MO" if direction == "inbound" else "MT"
    return POLICIES[product].record_kind


def scrub_details(product: str, details: dict) -> dict:
    """A copy of `details` with every field not declared kept replaced by REDACTED."""
    kept = POLICIES[product].kept_details
    return {k: (v if k in kept else REDACTED) for k, v in details.items()}
