"""Records the account holds already, read to compare with what is offered again (their
sealed fields opened)."""

from __future__ import annotations

from models.records.sealed import open_row
from models.records.transaction import Transaction
from models.store.prepared import PreparedQuery, statement_sizes
from models.store.state import current_store

COMPARED = ("product", "direction", "created_at", "sender", "recipient", "body", "details")


def stored_records(names: list[tuple[str, str]]) -> dict[tuple[str, str], dict]:
    """The records of `names` the store holds, as dicts of python values, their sealed
    fields opened."""
    wanted = set(names)
    ids = sorted({transaction_id for transaction_id, _ in names})
    fields = [getattr(Transaction, name) for name in STORED]
    found = {}
    start = 0
    for size in statement_sizes(len(ids)):
        for raw in _FIND.execute(size, {"id": ids[start : start + size]}).fetchall():
            if (raw[0], raw[1]) in wanted:
                row = {f.name: f.python_value(v) for f, v in zip(fields, raw, strict=True)}
                found[(raw[0], raw[1])] = row
        start += size
    keys = current_store().keystore.fetch(row["key_id"] for row in found.values() if row["key_id"])
    for row in found.values():
        if row["key_id"] and row["redacted_at"] is None:
            open_row(row, keys.get(row["key_id"]))
    return found


STORED = ("id", "account", "redacted_at", "key_id", *COMPARED)


_FIND = PreparedQuery(
    lambda mark, n: Transaction.select(*(getattr(Transaction, name) for name in STORED)).where(
        Transaction.id.in_([mark("id", i) for i in range(n)])
    )
)
