"""Handlers of the proof API (openapi/proof.yml): the account's erasure log, its signed
tree heads and proofs, the public keys, and receipts. The domain is models/proof/ (entries,
tree, heads, receipts), signing with the key of the store the app serves; every read is
the authenticated account's own."""

from __future__ import annotations

import functools
from collections.abc import Callable

from models.erasure.settling import settle_transaction
from models.errors import NoReceipt
from models.jobs.queries import find_job
from models.proof.entries import b64, timestamp
from models.proof.heads import signed_head
from models.proof.receipts import job_receipt, record_receipt
from models.proof.signing import listed_keys
from models.proof.tree import checked_consistency, checked_entries, checked_inclusion
from models.store.base import Clock
from models.store.state import Store


class ProofApi:
    def __init__(self, store: Store, clock: Clock):
        self.store = store
        self.clock = clock

    def operations(self) -> dict[str, Callable]:
        return {
            "retrieve-tree-head": self.tree_head,
            "list-log-entries": self.entries,
            "retrieve-inclusion-proof": self.inclusion,
            "retrieve-consistency-proof": self.consistency,
            "list-keys": self.keys,
            "retrieve-record-receipt": self.record_receipt,
            "retrieve-job-receipt": self.job_receipt,
        }

    def tree_head(self, token_info: dict):
        head = signed_head(token_info["sub"], self.store.signer(), self.clock(), wait=False)
        return {
            "tree_size": head.tree_size,
            "root_hash": b64(bytes(head.root)),
            "timestamp": timestamp(head.timestamp),
            "key_id": head.kid,
            "signature": head.token,
        }

    def entries(self, start: int, end: int, token_info: dict):
        found = checked_entries(token_info["sub"], start, end)
        return {
            "entries": [
                {"index": e.position, "entry": e.body, "leaf_hash": b64(e.leaf)} for e in found
            ]
        }

    def inclusion(self, index: int, tree_size: int, token_info: dict):
        leaf, path = checked_inclusion(token_info["sub"], index, tree_size)
        return {
            "index": index,
            "tree_size": tree_size,
            "leaf_hash": b64(leaf),
            "inclusion_proof": [b64(h) for h in path],
        }

    def consistency(self, first: int, second: int, token_info: dict):
        path = checked_consistency(token_info["sub"], first, second)
        return {"first": first, "second": second, "consistency_proof": [b64(h) for h in path]}

    def keys(self):
        return {"keys": listed_keys(self.store.signing_key)}

    def record_receipt(self, id: str, product: str, token_info: dict, type: str | None = None):
        account = token_info["sub"]
        receipt_now = functools.partial(record_receipt, account, id, product, type)
        try:
            receipt = receipt_now(self.store.signer(), self.clock())
        except NoReceipt:
            if not settle_transaction(account, id):  # its redaction was not pending
                raise
            receipt = receipt_now(self.store.signer(), self.clock())
        return {"receipt": receipt.token, "document": receipt.document}

    def job_receipt(self, job: str, token_info: dict):
        found = find_job(job, token_info["sub"])
        receipt = job_receipt(found, self.store.signer(), self.clock())
        return {"receipt": receipt.token, "document": receipt.document}
