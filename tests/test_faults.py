"""Faults: the SQLite disk fills up during a redaction. The request gets a problem body
(503), the record is untouched (never half-scrubbed), and once space is back the same
request succeeds without a restart."""

from __future__ import annotations

import os
import subprocess

import pytest

from models import Transaction, database

from .conftest import IN_CI, add_account, add_records, record

URL = "/v1/redact/transaction"


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs, mounted for the test (needs root, as CI has)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs",
                              str(mount_point)], capture_output=True, text=True)
    if mounted.returncode != 0:
        if IN_CI:
            pytest.fail(f"cannot mount a small disk: {mounted.stderr.strip()}")
        pytest.skip(f"cannot mount a small disk (needs root): {mounted.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(directory) -> str:
    """Fill the file system of `directory` to the last block; returns the filler's path."""
    path = os.path.join(directory, "filler")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 4096, 512, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
    return path


def test_a_full_disk_fails_the_redaction_cleanly_and_service_recovers(make_app, small_disk,
                                                                      tmp_path):
    app = make_app(f"sqlite:///{small_disk / 'redact.db'}",
                   queue_url=f"sqlite:///{tmp_path / 'q.db'}")
    headers = add_account("acct0001")
    body = "personal text " * 20000  # ~280 KB: its pages must go to the journal first
    add_records(record("FULL1", text=body))
    filler = fill(small_disk)

    with app.test_client() as client:
        failed = client.post(URL, json={"id": "FULL1", "product": "sms"}, headers=headers)
        assert failed.status_code == 503
        problem = failed.json()
        assert {"type", "title", "detail", "instance"} <= set(problem)
        assert failed.headers["Retry-After"]
        with database.connection_context():
            untouched = Transaction.get_by_id("FULL1")
        assert (untouched.body, untouched.redacted_at) == (body, None)

        os.unlink(filler)
        done = client.post(URL, json={"id": "FULL1", "product": "sms"}, headers=headers)
        assert done.status_code == 204
    with database.connection_context():
        scrubbed = Transaction.get_by_id("FULL1")
    assert scrubbed.body == "REDACTED" and scrubbed.redacted_at is not None
