"""Proof of erasure: RFC 9162's Merkle tree (merkle.py), the erasure log of each account
(entries.py: its entries; tree.py: the tree over them and its proofs; heads.py: its signed
tree heads), the signing of tree heads and receipts (signing.py), receipts (receipts.py)
and the auditor's check of a whole log (check.py). Built on models.store and
models.records."""
