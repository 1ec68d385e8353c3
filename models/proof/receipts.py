"""Receipts: signed proofs that a record, or a job's records, were erased.

A receipt is a compact JWS (models/proof/signing.py, typ `redact-receipt+jws`) whose document
holds what was erased, when, how (source, job, trace id), which fields, and the erasure
log's entry for it with an inclusion proof against a signed tree head, itself a JWS.
Anyone with the service's public keys checks it offline (`redact receipts verify`, or the
dozen lines of README.md): both signatures, and the proof from the entry's leaf hash to
the head's root.

It also says what erasure means in the store: on SQLite the old bytes are gone when the
redaction commits (secure_delete, a truncated rollback journal, docs/erasure.md); on
PostgreSQL once maintenance has vacuumed the tables after it, so until a `maintenance`
entry covers the redaction the receipt says `pending`, with the next scheduled run.
"""

from __future__ import annotations

import base64
import datetime
import json
from typing import NamedTuple, Protocol

from models.errors import NoReceipt, RecordNotFound
from models.proof import entries, heads, merkle, tree
from models.proof.signing import key_set, verify
from models.records.products import direction_of, record_kind
from models.records.transaction import RedactionAudit, Transaction
from models.store.base import is_postgres
from models.store.keys import SigningKey
from models.store.schedule import next_maintenance

RECEIPT_TYPE = "redact-receipt+jws"


class Receipt(NamedTuple):
    token: str  # the compact JWS: the proof
    document: dict  # its payload, for reading


FINISHED = ("succeeded", "canceled")


def record_receipt(
    api_key: str,
    transaction_id: str,
    product: str,
    type_: str | None,
    key: SigningKey,
    now: datetime.datetime,
) -> Receipt:
    """The receipt of the account's redacted record; RecordNotFound (another account's
    too), NoReceipt if it is not redacted or was redacted before the log existed."""
    direction = direction_of(product, type_)
    if "\x00" in transaction_id:  # no stored id holds NUL (PostgreSQL's text cannot)
        raise RecordNotFound(transaction_id, record_kind(product, direction))
    record = Transaction.get_or_none(
        (Transaction.id == transaction_id)
        & (Transaction.account == api_key)
        & (Transaction.product == product)
        & (Transaction.direction == direction if direction else Transaction.direction.is_null())
    )
    if record is None:
        raise RecordNotFound(transaction_id, record_kind(product, direction))
    if record.redacted_at is None:
        raise NoReceipt(f"Record '{transaction_id}' is not redacted")
    audit = (
        RedactionAudit.select(RedactionAudit.log_index)
        .where(
            (RedactionAudit.api_key == api_key) & (RedactionAudit.transaction_id == transaction_id)
        )
        .order_by(RedactionAudit.id.desc())
        .first()
    )
    if audit is None or audit.log_index is None:
        raise NoReceipt(
            f"Record '{transaction_id}' was redacted before the erasure log began"
            " (`redact receipts backfill` logs it)"
        )
    position = audit.log_index
    entry = json.loads(_entry(api_key, position).body)
    head = heads.signed_head(api_key, key, now)
    document = {
        "receipt": "record",
        "issued_at": entries.timestamp(now),
        "account": api_key,
        "record": entry["record"],
        "redacted_at": entry["at"],
        "source": entry["source"],
        "job": entry["job"],
        "trace_id": entry["trace_id"],
        "fields": entry["fields"],
        # Logged after the fact: `redacted_at` is then when the entry was written.
        "backfilled": entry.get("backfilled", False),
        "log": proof(api_key, position, head),
        "erasure": erasure(api_key, position, head, now),
    }
    return Receipt(key.sign(document, RECEIPT_TYPE), document)


class FinishedJob(Protocol):
    """What a job's receipt reads of the job (a models.jobs RedactionJob): the proof knows
    jobs only by their entries in the log."""

    id: str
    status: str
    account_id: str
    log_index: int | None


# The frame of record_receipt (entry, head, proof, erasure), with other claims: kept apart.
def job_receipt(job: FinishedJob, key: SigningKey, now: datetime.datetime) -> Receipt:
    """The receipt of a finished job: its records by their log entries (ranges and
    count), proven by the job's `job.finished` entry; NoReceipt if it is not finished."""
    position = job.log_index
    if job.status not in FINISHED or position is None:
        raise NoReceipt(f"Job '{job.id}' is {job.status}: receipts are for finished jobs")
    api_key = job.account_id
    entry = json.loads(_entry(api_key, position).body)
    head = heads.signed_head(api_key, key, now)
    document = {
        "receipt": "job",
        "issued_at": entries.timestamp(now),
        "account": api_key,
        "job": {
            "id": job.id,
            "status": entry["status"],
            "finished_at": entry["at"],
            "redacted": entry["redacted"],
            "already_redacted": entry["already_redacted"],
            "skipped": entry["skipped"],
            "not_redacted": entry.get("not_redacted", 0),  # entries before it had none
        },
        "records": entry["entries"],
        "log": proof(api_key, position, head),
        # Up to the job's own entry: finishing forgets its numbers, which must be erased too.
        "erasure": erasure(api_key, position, head, now),
    }
    return Receipt(key.sign(document, RECEIPT_TYPE), document)


def _entry(api_key: str, position: int) -> entries.Entry:
    entry = entries.entry(api_key, position)
    if entry is None:
        raise LookupError(f"log entry {position} of {api_key} is missing")
    return entry


def proof(api_key: str, position: int, head: heads.TreeHead) -> dict:
    """An entry with its inclusion proof against `head`."""
    entry = _entry(api_key, position)
    return {
        "index": position,
        "entry": entry.body,
        "leaf_hash": entries.b64(entry.leaf),
        "tree_size": head.tree_size,
        "inclusion_proof": [
            entries.b64(h) for h in tree.inclusion_proof(api_key, position, head.tree_size)
        ],
        "tree_head": head.token,
    }


def erasure(api_key: str, position: int, head: heads.TreeHead, now: datetime.datetime) -> dict:
    """What erasure means in this store, and whether it is complete for the entries up to
    `position`."""
    if not is_postgres():
        return {
            "store": "sqlite",
            "status": "complete",
            "detail": (
                "secure_delete overwrote the old values and the rollback journal was"
                " truncated when the redaction committed"
            ),
        }
    done = _maintenance_after(api_key, position, head.tree_size)
    if done is None:
        return {
            "store": "postgresql",
            "status": "pending",
            "next_maintenance": entries.timestamp(next_maintenance(now)),
            "detail": (
                "the old row versions remain until maintenance vacuums the tables after the"
                " redaction"
            ),
        }
    return {
        "store": "postgresql",
        "status": "complete",
        "detail": "maintenance vacuumed the tables after the redaction",
        "maintenance": proof(api_key, done, head),
    }


def _maintenance_after(api_key: str, position: int, tree_size: int) -> int | None:
    """The position of the first `maintenance` entry (within the tree) that erased entry
    `position`."""
    for entry in entries.entries_of_kind(api_key, "maintenance", position + 1, tree_size):
        if json.loads(entry.body)["erased_before"] > position:
            return entry.position
    return None


# --- verifying, offline ---


def verify_receipt(token: str, keys: list[dict]) -> dict:
    """Check a receipt with nothing but the public keys: its signature, the tree head's,
    each inclusion proof (the entry's and, on PostgreSQL, the maintenance entry's), and
    that the log entries say what the receipt says. Returns the receipt's document;
    ValueError naming what does not hold."""
    keyset = key_set(keys)
    header, document = verify(token, keyset)
    if header.get("typ") != RECEIPT_TYPE:
        raise ValueError("not a receipt (its JWS typ is not " + RECEIPT_TYPE + ")")
    proven = document["log"]
    _check_proof(proven, document["account"], keyset)
    entry = json.loads(proven["entry"])
    if document["receipt"] == "record":
        claims = {
            "kind": "redaction",
            "record": document["record"],
            "at": document["redacted_at"],
            "source": document["source"],
            "job": document["job"],
            "trace_id": document["trace_id"],
            "fields": document["fields"],
            "backfilled": document.get("backfilled") or None,  # absent from other entries
        }
    else:
        job = document["job"]
        claims = {
            "kind": "job.finished",
            "job": job["id"],
            "status": job["status"],
            "at": job["finished_at"],
            "redacted": job["redacted"],
            "already_redacted": job["already_redacted"],
            "skipped": job["skipped"],
            "entries": document["records"],
        }
    for name, value in claims.items():
        if entry.get(name) != value:
            raise ValueError(f"the receipt's {name} is not its log entry's")
    maintenance = document["erasure"].get("maintenance")
    if maintenance:
        _check_proof(maintenance, document["account"], keyset)
        done = json.loads(maintenance["entry"])
        if done.get("kind") != "maintenance" or not done.get("erased_before", 0) > proven["index"]:
            raise ValueError("the maintenance entry does not cover the erasure")
    elif document["erasure"].get("status") == "complete" and document["erasure"]["store"] != (
        "sqlite"
    ):
        raise ValueError("a complete erasure on PostgreSQL names no maintenance entry")
    return document


def _check_proof(proof: dict, account: str, keyset) -> None:
    header, head = verify(proof["tree_head"], keyset)
    if header.get("typ") != heads.HEAD_TYPE or head["account"] != account:
        raise ValueError("the tree head is not this account's")
    if head["tree_size"] != proof["tree_size"]:
        raise ValueError("the proof is not against the tree head's size")
    entry = json.loads(proof["entry"])
    if entry.get("account") != account or entry.get("index") != proof["index"]:
        raise ValueError("the log entry is not this account's at this index")
    leaf = merkle.leaf_hash(proof["entry"].encode())
    if entries.b64(leaf) != proof["leaf_hash"]:
        raise ValueError("the leaf hash is not the entry's")
    path = [_b64decode(h) for h in proof["inclusion_proof"]]
    if not merkle.verify_inclusion(
        proof["index"], head["tree_size"], leaf, path, _b64decode(head["root_hash"])
    ):
        raise ValueError(f"the inclusion proof of entry {proof['index']} does not verify")


def _b64decode(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise ValueError("a hash is not base64") from None
