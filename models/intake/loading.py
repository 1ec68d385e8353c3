"""`redact transactions load`: records from JSON Lines, read with the records API's schema
(models/intake/schema.py, storing.py) and stored as it stores them, all or nothing."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

from models.errors import InvalidRecord, InvalidRecords, RecordConflict
from models.intake.prepare import seal_rows
from models.intake.schema import parse_records
from models.intake.storing import StoreCounts, StoreRequest, store_in_transaction
from models.records.account import Account
from models.records.transaction import Transaction
from models.store.base import database, is_postgres, utcnow
from models.store.state import current_store

BATCH = 1000
TRACE_ID = "cli:transactions-load"


def load_records(
    lines: Iterable[str], progress: Callable[[int], None] | None = None
) -> StoreCounts:
    """Store every record of `lines` (JSON Lines, each naming its account in `api_key`;
    blank lines skipped) in one transaction, as the records API stores them: a record the
    account holds already is left unchanged, and `immediate` policies redact on arrival.

    All or nothing: on the first bad line (malformed, an unknown account, an id stored
    with other content), raises InvalidRecord naming its line number, and nothing is
    stored. A record carrying a number its account suppresses is not stored (nor
    anything of it): `refused` lists (line number, fields carrying it). Returns the
    counts. `progress`, if given, is called with the records read so far after each
    batch (before the commit that stores them all)."""
    known_accounts: set[str] = set()
    counts = StoreCounts()
    now = utcnow()
    made: list[str] = []  # the data keys made: discarded if nothing is stored
    try:
        with database.atomic():
            batch: list[tuple[int, object]] = []
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    raw = json.loads(line)
                except ValueError as exc:
                    raise InvalidRecord(f"line {number}: not JSON: {exc}") from None
                batch.append((number, raw))
                if len(batch) >= BATCH:
                    counts.add(_store(batch, known_accounts, now, made))
                    batch = []
                    if progress is not None:
                        progress(counts.received)
            if batch:
                counts.add(_store(batch, known_accounts, now, made))
                if progress is not None:
                    progress(counts.received)
    except InvalidRecord:  # nothing was stored (after a database error the commit may
        current_store().keystore.discard(made)  # have happened: the keys stay)
        raise
    current_store().keystore.discard(counts.unused_keys)
    if counts.stored and is_postgres():
        # PostgreSQL plans by its statistics, which a bulk load leaves stale until
        # autovacuum next comes by (a minute or more): until then it took a redaction's
        # scrub through the index of an account's unredacted records, every one of them,
        # instead of the primary key (bench/run.py: ~500 redactions/s instead of ~1,500).
        # Its documentation's advice after a bulk load: ANALYZE.
        database.execute_sql(f'ANALYZE "{Transaction._meta.table_name}"')
    return counts


def _store(batch: list[tuple[int, object]], known: set[str], now, made: list[str]) -> StoreCounts:
    if not batch:
        return StoreCounts()
    try:
        rows = parse_records([raw for _, raw in batch], None)
    except InvalidRecords as exc:
        index, field, message = exc.errors[0]
        where = f"{field}: " if field else ""
        raise InvalidRecord(f"line {batch[index][0]}: {where}{message}") from None
    for (number, _), row in zip(batch, rows, strict=True):
        if row["account"] not in known:
            if not Account.select().where(Account.api_key == row["account"]).exists():
                raise InvalidRecord(f"line {number}: api_key: no account {row['account']!r}")
            known.add(row["account"])
    # Records carrying a suppressed number are set aside (their line numbers and fields
    # reported), the rest sealed under keys of their own.
    prepared = seal_rows(rows)
    made.extend(row["key_id"] for row in prepared.rows)
    refused = [(batch[index][0], fields) for index, fields in prepared.refused]
    try:
        counts = store_in_transaction(StoreRequest(prepared.rows, now, TRACE_ID))
    except RecordConflict as exc:
        # The last line naming the id: a conflict within the file is with its later line.
        number = [
            n for (n, _), row in zip(batch, rows, strict=True) if row["id"] == exc.transaction_id
        ][-1]
        raise InvalidRecord(
            f"line {number}: id {exc.transaction_id!r} is already stored with other content"
        ) from None
    counts.received += len(refused)
    counts.refused = refused
    return counts
