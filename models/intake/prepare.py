"""Records made ready to store: read with the one schema (schema.py), those carrying a
suppressed number set aside (models/erasure/suppression.py), and the rest sealed under data
keys of their own, made and committed to the key store before the records are stored
(storing.py), so that no stored record is ever without its key."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from models.erasure.suppression import refused
from models.intake.schema import parse_records
from models.records.sealed import seal_row
from models.store.state import current_store


@dataclasses.dataclass
class Prepared:
    rows: list[dict]
    refused: list[tuple[int, list[str]]]
    """(index among the rows read, names of the fields carrying a suppressed number)."""


def prepare_records(records: Sequence[Any], api_key: str | None) -> Prepared:
    """`parse_records`, then `seal_rows`."""
    return seal_rows(parse_records(records, api_key))


def seal_rows(rows: list[dict]) -> Prepared:
    """The rows no suppression refuses, each with a new data key (`key_id`, stored in the
    key store and committed) and its personal fields sealed under it (`sealed`)."""
    refusals = refused(rows)
    kept = [row for index, row in enumerate(rows) if index not in refusals]
    keys = current_store().keystore.create(len(kept)) if kept else []
    for row, (key_id, key) in zip(kept, keys, strict=True):
        row["key_id"] = key_id
        row["sealed"] = seal_row(row, key)
    return Prepared(kept, sorted(refusals.items()))
