"""The receipt verifier README.md shows auditors (the JOSE library and hashlib alone),
run as they would run it: on receipts of records at many positions of logs of many
sizes, and on receipts that were tampered with."""

from __future__ import annotations

import json
import pathlib
import re
import subprocess
import sys

import pytest

from models import current_store
from models.proof.signing import key_set, verify
from tests.support import add_records, record

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def verifier() -> str:
    text = README.read_text()
    section = text[text.index("## Proof of erasure") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def run(directory: pathlib.Path, token: str, keys: dict) -> subprocess.CompletedProcess:
    (directory / "receipt.jws").write_text(token)
    (directory / "keys.json").write_text(json.dumps(keys))
    (directory / "verify.py").write_text(verifier())
    return subprocess.run(
        [sys.executable, "verify.py"], cwd=directory, capture_output=True, text=True, check=False
    )


def test_the_readme_verifier_accepts_every_receipt_and_refuses_a_forged_one(
    client, account, tmp_path
):
    add_records(*(record(f"T{n}") for n in range(13)))
    receipts = []
    for n in range(13):  # logs of 1..13 entries: every shape of audit path
        response = client.post(
            "/v1/redact/transaction", json={"id": f"T{n}", "product": "sms"}, headers=account
        )
        assert response.status_code == 204
        for m in {0, n // 2, n}:
            answer = client.get(
                f"/v1/redact/records/T{m}/receipt", params={"product": "sms"}, headers=account
            ).json()
            receipts.append(answer["receipt"])
    keys = client.get("/v1/redact/keys").json()
    for token in receipts:
        done = run(tmp_path, token, keys)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("erased: {")  # then complete, or pending (PostgreSQL)

    # A receipt whose payload was edited fails its signature.
    header, payload, signature = receipts[-1].split(".")
    done = run(tmp_path, f"{header}.{payload[:-2]}AA.{signature}", keys)
    assert done.returncode != 0


@pytest.mark.parametrize("part", ["entry", "path", "index"])
def test_the_readme_verifier_refuses_a_proof_for_another_place(client, account, tmp_path, part):
    """A receipt signed by the service but whose proof does not lead to the signed root
    (built here by swapping in another receipt's part, then signing with the service's own
    key, as a service that lied would) is refused by the proof, not only the signature."""

    add_records(*(record(f"T{n}") for n in range(6)))
    for n in range(6):
        client.post(
            "/v1/redact/transaction", json={"id": f"T{n}", "product": "sms"}, headers=account
        )
    keys = client.get("/v1/redact/keys").json()
    first, second = (
        client.get(
            f"/v1/redact/records/T{n}/receipt", params={"product": "sms"}, headers=account
        ).json()["receipt"]
        for n in (1, 4)
    )
    _, document = verify(first, key_set(keys["keys"]))
    _, other = verify(second, key_set(keys["keys"]))
    if part == "entry":
        document["log"]["entry"] = other["log"]["entry"]  # another entry, this one's path
    elif part == "path":
        document["log"]["inclusion_proof"] = document["log"]["inclusion_proof"][::-1]
    else:  # the same path leads to the root from a place beyond the tree, too
        document["log"]["index"] += 8
    lie = current_store().signer().sign(document, "redact-receipt+jws")
    done = run(tmp_path, lie, keys)
    assert done.returncode != 0 and "AssertionError" in done.stderr
