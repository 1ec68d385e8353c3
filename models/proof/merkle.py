"""RFC 9162's Merkle tree (section 2.1, the hash tree of Certificate Transparency v2) over
SHA-256: leaf and node hashing, the tree hash of any prefix, inclusion and consistency
proofs, and their verification, exactly as the RFC states them.

The functions that build proofs take `subtree(start, end)`, the hash of the leaves
[start, end) for a range the RFC's recursion asks for; the store answers it from what it
keeps (models/proof/tree.py), and `hashes_subtree` answers it from a list of leaf hashes. The
verifiers need nothing but the proof: they are what an auditor runs offline.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

Subtree = Callable[[int, int], bytes]

EMPTY_ROOT = hashlib.sha256(b"").digest()  # MTH({}) = HASH()


def leaf_hash(data: bytes) -> bytes:
    """MTH({d(0)}) = HASH(0x00 || d(0))."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """HASH(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def split(n: int) -> int:
    """k, the largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def is_complete(start: int, end: int) -> bool:
    """Whether [start, end) is a complete, aligned subtree (a power of two in size,
    starting at a multiple of it), the only kind a store keeps hashes of."""
    size = end - start
    return size > 0 and size & (size - 1) == 0 and start % size == 0


def range_hash(subtree: Subtree, start: int, end: int) -> bytes:
    """MTH(D[start:end]) for a range of the RFC's recursion (start aligned to the largest
    power of two below the size), from the hashes of complete subtrees."""
    if end == start:
        return EMPTY_ROOT
    if is_complete(start, end):
        return subtree(start, end)
    k = split(end - start)
    return node_hash(range_hash(subtree, start, start + k), range_hash(subtree, start + k, end))


def inclusion_path(subtree: Subtree, index: int, size: int) -> list[bytes]:
    """PATH(m, D[n]) (RFC 9162 2.1.3.1): the audit path of leaf `index` in the tree of
    the first `size` leaves, nearest sibling first."""
    if not 0 <= index < size:
        raise ValueError("the index must lie within the tree")
    path: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        k = split(end - start)
        if index < start + k:
            path.append(range_hash(subtree, start + k, end))
            end = start + k
        else:
            path.append(range_hash(subtree, start, start + k))
            start += k
    path.reverse()
    return path


def consistency_path(subtree: Subtree, first: int, second: int) -> list[bytes]:
    """PROOF(m, D[n]) (RFC 9162 2.1.4.1): that the tree of `second` leaves extends the
    tree of its first `first` leaves (0 < first <= second)."""
    if not 0 < first <= second:
        raise ValueError("consistency needs 0 < first <= second")
    proof: list[bytes] = []
    start, end, m, whole = 0, second, first, True
    while m != end - start:  # SUBPROOF(m, D[start:end], whole)
        k = split(end - start)
        if m <= k:
            proof.append(range_hash(subtree, start + k, end))
            end = start + k
        else:
            proof.append(range_hash(subtree, start, start + k))
            start, m, whole = start + k, m - k, False
    if not whole:
        proof.append(range_hash(subtree, start, end))
    proof.reverse()
    return proof


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH of a whole list of leaf hashes."""
    return range_hash(hashes_subtree(leaf_hashes), 0, len(leaf_hashes))


def hashes_subtree(leaf_hashes: Sequence[bytes]) -> Subtree:
    """`subtree` over leaf hashes held in memory (tests, the auditor's recomputation)."""

    def subtree(start: int, end: int) -> bytes:
        if end - start == 1:
            return leaf_hashes[start]
        k = split(end - start)
        return node_hash(subtree(start, start + k), subtree(start + k, end))

    return subtree


def verify_inclusion(
    index: int, size: int, leaf: bytes, path: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 2.1.3.2: whether `path` proves the leaf hash `leaf` at `index` of the
    tree of `size` leaves whose root is `root`."""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


# Walks the path as verify_inclusion does: the RFC's two algorithms, each as written.
def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 2.1.4.2: whether `proof` shows the tree of `second` leaves (root
    `second_root`) extends the tree of `first` leaves (root `first_root`)."""
    if not 0 < first <= second:
        return False
    if first == second:
        return not proof and first_root == second_root
    path = list(proof)
    if first & (first - 1) == 0:  # a power of two: the first tree is a subtree itself
        path.insert(0, first_root)
    if not path:
        return False
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root
