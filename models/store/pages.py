"""Pages of an account's rows, Stripe-style: cursors are ids, `has_more` says whether more
lie that way (jobs, holds, webhooks and their deliveries)."""

from __future__ import annotations

import dataclasses

from models.errors import InvalidCursor


@dataclasses.dataclass
class Page:
    items: list
    has_more: bool


def paginate(query, key, descending: bool, limit: int, after, before) -> Page:
    """A page of `query` ordered by `key`, Stripe-style: `after` pages forward from a
    cursor value, `before` backward; `has_more` says whether more lie that way."""
    forward = key.desc() if descending else key.asc()
    backward = key.asc() if descending else key.desc()
    if before is not None:
        query = query.where(key > before if descending else key < before)
        items = list(query.order_by(backward).limit(limit + 1))
        has_more = len(items) > limit
        return Page(list(reversed(items[:limit])), has_more)
    if after is not None:
        query = query.where(key < after if descending else key > after)
    items = list(query.order_by(forward).limit(limit + 1))
    return Page(items[:limit], len(items) > limit)


def newest_first(model, api_key: str, limit: int, starting_after, ending_before, status) -> Page:
    """A page of the account's rows of `model` (jobs, holds: rows with a public `id`, an
    ordering `seq`, an `account` and a `status`), newest first; a cursor naming no row of
    the account is InvalidCursor."""
    query = model.select().where(model.account == api_key)
    if status is not None:
        query = query.where(model.status == status)

    def cursor(parameter: str, public_id: str | None):
        if public_id is None:
            return None
        row = model.get_or_none((model.id == public_id) & (model.account == api_key))
        if row is None:
            raise InvalidCursor(parameter, public_id)
        return row.seq

    return paginate(
        query,
        model.seq,
        True,
        limit,
        cursor("starting_after", starting_after),
        cursor("ending_before", ending_before),
    )
