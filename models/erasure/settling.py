"""Completing redactions that were acknowledged once their keys were destroyed but whose
scrub did not commit (a crash, a failed commit between the two): their intents wait in the
key store (models/store/pending.py), and whoever meets one first completes it, with the
scrub, the audit row and the erasure-log entry the redaction would have written, named by
what the intent kept (who asked, when, why): the next start (`settle_pending`), the
supervisor of `redact serve --workers` once a worker has died and the queue's periodic
sweep (`settle_left`), a read of the record (`settle_record`), or the writer right after a
commit that failed.
"""

from __future__ import annotations

import datetime
import functools
import json
import logging
from collections.abc import Callable, Sequence

import peewee

from models.erasure.statements import (
    FIND,
    Found,
    RedactionRequest,
    scrub_and_audit,
    scrubbed_values,
)
from models.records.transaction import Transaction
from models.store.state import current_store

logger = logging.getLogger("redact.erasure.settling")


def intent_json(request: RedactionRequest) -> str:
    """What the key store keeps of an acknowledged redaction until its scrub commits."""
    return json.dumps(
        [
            request.api_key,
            request.transaction_id,
            request.product,
            request.direction,
            request.now.isoformat(),
            request.trace_id,
            request.source,
        ]
    )


def intent_request(text: str) -> RedactionRequest:
    """The redaction `intent_json` kept (its checks were passed when it was acknowledged)."""
    api_key, transaction_id, product, direction, now, trace_id, source = json.loads(text)
    at = datetime.datetime.fromisoformat(now)
    return RedactionRequest(api_key, transaction_id, product, direction, at, 0, trace_id, source)


def settle_pending() -> int:
    """Complete every intent the key store holds (at a start: what a crash left); how
    many there were."""
    store = current_store()
    count = len(store.keystore.pending())
    if count:
        store.group_commit.run(settle_batch, None)
        store.group_commit.close()  # its thread and connection, before `serve` forks
    return count


def settle_left(acknowledged_before: datetime.datetime | None = None) -> int:
    """Complete, and delete, the intents a process that is gone left behind (a worker
    killed while serving): all of them, or those acknowledged before
    `acknowledged_before` (a live writer settles its own within a commit); how many there
    were. Completing one that its own writer is completing too is harmless: only one of
    them scrubs it. An unreachable store is logged, and its intents wait for the next
    pass."""
    store = current_store()
    try:
        left = [
            key_id
            for key_id, text in store.keystore.pending().items()
            if acknowledged_before is None or intent_request(text).now < acknowledged_before
        ]
        if left:
            store.group_commit.run(settle_batch, left)
            store.keystore.intents.flush()
            logger.info("completed %d acknowledged redactions left pending", len(left))
    except peewee.PeeweeException as exc:
        logger.warning("could not complete the redactions left pending: %s", exc)
        return 0
    return len(left)


def settle_record(key_id: str) -> bool:
    """Complete the pending redaction of the record under data key `key_id`, if there is
    one (a read that meets a record whose key is gone but whose scrub is not there yet);
    True if there was."""
    store = current_store()
    if not store.keystore.pending([key_id]):
        return False
    store.group_commit.run(settle_batch, [key_id])
    return True


def settle_transaction(api_key: str, transaction_id: str) -> bool:
    """`settle_record` of the account's record `transaction_id` if it is not redacted
    (a receipt asked for); True if its redaction was pending."""
    row = (
        Transaction.select(Transaction.key_id)
        .where(
            (Transaction.id == transaction_id)
            & (Transaction.account == api_key)
            & Transaction.redacted_at.is_null()
        )
        .first()
    )
    return row is not None and row.key_id is not None and settle_record(row.key_id)


def settle_later(key_ids: list[str]) -> Callable[[bool], None]:
    """What the writer does once the transaction holding these intents' scrubs ends:
    the intents are settled if it committed, completed in the next batch if not."""
    return functools.partial(_ended, key_ids)


def _ended(key_ids: list[str], committed: bool) -> None:
    store = current_store()
    if committed:
        store.keystore.intents.settle(key_ids)
        return
    logger.warning("%d acknowledged redactions did not commit; completing them", len(key_ids))
    store.group_commit.submit(settle_batch, key_ids)


def settle_batch(items: list[Sequence[str] | None]) -> list:
    """Complete the intents of `items` (each a list of key ids, or None for every intent)
    inside the caller's transaction: a record not yet redacted is scrubbed, audited and
    logged as its intent says; the intents are settled once that commits."""
    store = current_store()
    wanted = None if None in items else sorted({key for item in items for key in item or ()})
    stored = store.keystore.pending(wanted)
    if stored:
        requests = [intent_request(text) for text in stored.values()]
        pairs = zip(stored, requests, strict=True)
        key_of = {(r.transaction_id, r.api_key): key for key, r in pairs}
        ids = sorted({r.transaction_id for r in requests})
        found = map(Found._make, FIND.execute(len(ids), {"id": ids}).fetchall())
        rows = {(row.id, row.account): row for row in found}
        outcomes: list = []
        to_scrub: dict[tuple[str, str], tuple] = {}
        fields: dict[tuple[str, str], list[str]] = {}
        keys: dict[tuple[str, str], str | None] = {}
        for request in requests:
            name = (request.transaction_id, request.api_key)
            row = rows.get(name)
            # Gone, redacted since (the commit did land), or not the record of this key.
            if (
                row is None
                or row.redacted_at is not None
                or row.key_id != key_of[name]
                or name in to_scrub
            ):
                outcomes.append(False)
                continue
            to_scrub[name], fields[name] = scrubbed_values(request.product, row)
            keys[name] = row.key_id
            outcomes.append(True)
        if to_scrub:
            scrub_and_audit(requests, outcomes, to_scrub, fields, keys, None)
        store.group_commit.after_transaction(functools.partial(_settled, list(stored)))
    return [None] * len(items)


def _settled(key_ids: list[str], committed: bool) -> None:
    if committed:
        current_store().keystore.intents.settle(key_ids)
