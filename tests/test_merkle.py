"""models/proof/merkle.py against RFC 9162 (and the test vectors Certificate Transparency
publishes for it), and the erasure log's stored tree (models/proof/tree.py) against the RFC's
definition computed in memory, across the sizes where its kept subtrees begin."""

from __future__ import annotations

import datetime
import json
import threading

import pytest

from models import create_tables, current_store, database, open_store
from models.proof import entries as erasure_entries
from models.proof import tree as erasure_tree
from models.proof.check import check_log
from models.proof.merkle import (
    EMPTY_ROOT,
    consistency_path,
    hashes_subtree,
    inclusion_path,
    leaf_hash,
    node_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)
from models.proof.signing import key_set, listed_keys
from models.store.keys import canonical
from models.store.state import current_store_kept

# Certificate Transparency's reference leaves and the roots of their first 1..8.
LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def mth(leaves: list[bytes]) -> bytes:
    """MTH(D[n]) exactly as RFC 9162 2.1.1 defines it, over the leaves' data."""
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaf_hash(leaves[0])
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def test_the_roots_are_certificate_transparencys():
    assert root_of([]) == EMPTY_ROOT
    hashes = [leaf_hash(leaf) for leaf in LEAVES]
    for n, expected in enumerate(ROOTS, start=1):
        assert root_of(hashes[:n]).hex() == expected
        assert mth(LEAVES[:n]).hex() == expected


def test_the_rfcs_own_example_paths():
    """RFC 9162 2.1.5: the tree of 7 leaves (d0..d6) and its examples."""
    hashes = [leaf_hash(bytes([n])) for n in range(7)]
    subtree = hashes_subtree(hashes)
    a, b, c, d, e, f, j = hashes
    g, h, i = node_hash(a, b), node_hash(c, d), node_hash(e, f)
    k, right = node_hash(g, h), node_hash(i, j)  # the RFC's k and l
    assert inclusion_path(subtree, 0, 7) == [b, h, right]  # PATH for a: [b, h, l]
    assert inclusion_path(subtree, 3, 7) == [c, g, right]  # for d: [c, g, l]
    assert inclusion_path(subtree, 4, 7) == [f, j, k]  # for e: [f, j, k]
    assert inclusion_path(subtree, 6, 7) == [i, k]  # for j: [i, k]
    # Its consistency proofs: of the trees of 3, 4 and 6 leaves with the tree of 7.
    assert consistency_path(subtree, 3, 7) == [c, d, g, right]
    assert consistency_path(subtree, 4, 7) == [right]
    assert consistency_path(subtree, 6, 7) == [i, j, k]


@pytest.mark.parametrize("size", range(1, 40))
def test_every_inclusion_and_consistency_proof_verifies_and_no_other_does(size):
    hashes = [leaf_hash(n.to_bytes(2, "big")) for n in range(size)]
    subtree = hashes_subtree(hashes)
    root = root_of(hashes)
    forged = leaf_hash(b"forged")
    for index in range(size):
        path = inclusion_path(subtree, index, size)
        assert verify_inclusion(index, size, hashes[index], path, root)
        assert not verify_inclusion(index, size, forged, path, root)
        if size > 1:
            assert not verify_inclusion((index + 1) % size, size, hashes[index], path, root)
    for first in range(1, size + 1):
        path = consistency_path(subtree, first, size)
        old = root_of(hashes[:first])
        assert verify_consistency(first, size, old, root, path)
        assert not verify_consistency(first, size, forged, root, path)
        if first < size:
            assert not verify_consistency(first, size, old, forged, path)
            assert not verify_consistency(first, size, old, root, path[:-1])


def test_the_stored_tree_is_the_rfcs_across_its_kept_subtrees(sqlite_url):
    """Appends of uneven sizes, to 66,038 entries, integrated after one or two appends:
    the root of the recorded right edge is then the in-memory tree's; at the end, proofs
    read from stored chunks and kept subtrees (levels 8 and 16) are the in-memory
    tree's."""
    with current_store_kept():
        open_store(sqlite_url, subject_key=b"k" * 32)
        create_tables()
        now = datetime.datetime(2026, 11, 1, tzinfo=datetime.UTC)
        hashes: list[bytes] = []
        with database.connection_context():
            for turn, batch in enumerate((1, 2, 5, 250, 3, 1000, 777, 2000, 62_000)):
                size = len(hashes)
                with database.atomic():
                    entries = [
                        ("acct0001", "policy.changed", {"n": size + i}) for i in range(batch)
                    ]
                    assert erasure_entries.append(entries, now) == list(range(size, size + batch))
                for start in range(size, size + batch, erasure_entries.MAX_ENTRIES):
                    found = erasure_entries.entries("acct0001", start, size + batch - 1)
                    assert found[0].position == start
                    hashes.extend(leaf_hash(e.body.encode()) for e in found)
                if turn % 3 == 1:
                    continue  # integrated with the next append's entries, together
                assert erasure_tree.integrate("acct0001") == len(hashes)
                state = erasure_entries.LogState.get(erasure_entries.LogState.api_key == "acct0001")
                frontier = erasure_tree.hashes(bytes(state.frontier))
                assert erasure_tree.root_of_frontier(frontier) == root_of(hashes)
            size = len(hashes)
            assert size == 66_038
            memory = hashes_subtree(hashes)
            for index in (0, 255, 256, 257, 4095, 65_535, 65_536, size - 1):
                assert erasure_tree.inclusion_proof("acct0001", index, size) == inclusion_path(
                    memory, index, size
                )
            for first in (1, 255, 256, 65_536, size - 1):
                assert erasure_tree.consistency_proof("acct0001", first, size) == (
                    consistency_path(memory, first, size)
                )


TEXTS = ["0A0000000123ABCD1", 'a"b\\c', "é ünïcode", "\u2028\x01\n", "\ud800lone", "%d %s {}"]


def test_redaction_entries_are_canonical_json_whatever_their_strings(sqlite_url):
    """A job's entries are written from templates, for speed: each is the canonical JSON
    of its fields, ASCII (a lone surrogate a client sent included), and reads back."""
    now = datetime.datetime(2026, 11, 1, tzinfo=datetime.UTC)

    def fields(text: str) -> dict:  # a client names the details, and the ids
        return {
            "record": {
                "id": text.encode("utf-8", "replace").decode(),
                "product": "sms",
                "type": None,
            },
            "fields": ["from", f"details.{text}"],
            "source": "api",
            "job": None,
            "key": None if len(text) % 2 else "00ff" * 8,
            "trace_id": "trace",
        }

    with current_store_kept():
        open_store(sqlite_url, subject_key=b"k" * 32)
        create_tables()
        with database.connection_context():
            with database.atomic():  # twice each: a template made, then reused
                erasure_entries.append(
                    [(f"acct{TEXTS.index(t)}", "redaction", fields(t)) for t in TEXTS * 2], now
                )
            for n, text in enumerate(TEXTS):
                stored = erasure_entries.entries(f"acct{n}", 0, 9)
                assert [found.position for found in stored] == [0, 1]
                for found in stored:
                    expected = {**fields(text), "account": f"acct{n}", "kind": "redaction"}
                    expected |= {"index": found.position, "at": "2026-11-01T00:00:00.000000Z"}
                    assert found.body == canonical(expected) and found.body.isascii()
                    assert json.loads(found.body)["fields"][1] == f"details.{text}"


def test_concurrent_appends_to_one_log_take_distinct_consecutive_positions(make_app, database_url):
    """Writers in their own transactions (threads here, processes in a scale-out) append
    to one account's log at once: every entry gets its own position, none is lost, and
    the log checks out (PostgreSQL serialises them on the account's log_state row)."""
    make_app(database_url)
    now = datetime.datetime(2026, 11, 1, tzinfo=datetime.UTC)
    failures = []

    def writer(name: str) -> None:
        try:
            for n in range(25):
                with database.connection_context(), database.atomic():
                    entries = [("acct0001", "policy.changed", {"w": name, "n": n})] * 3
                    erasure_entries.append(entries, now)
        except Exception as exc:  # reported below, with the rest
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    with database.connection_context():
        found = [e for start in (0, 1000) for e in erasure_entries.entries("acct0001", start, 299)]
        assert [e.position for e in found] == list(range(300))
        assert erasure_tree.integrate("acct0001") == 300
        keys = key_set(listed_keys(current_store().signing_key))
        assert check_log("acct0001", keys).problem is None
