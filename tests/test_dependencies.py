"""The dependency audit (.ci/audit.py): no installed release has an advisory on PyPI, and
the audit does fail on one that has (pycrypto 2.6.1, its last release, has several)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support import ROOT, require_service

# It asks PyPI about every installed release: seconds, over the network.
pytestmark = pytest.mark.slow

AUDIT = ROOT / ".ci" / "audit.py"


@pytest.fixture(autouse=True)
def pypi():
    require_service("PyPI", "pypi.org", 443)


def audit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(AUDIT), *args], capture_output=True, text=True, timeout=300
    )


def test_no_installed_release_has_a_known_vulnerability():
    done = audit()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 vulnerable" in done.stdout and "0 unreadable" in done.stdout


def test_the_audit_fails_on_a_vulnerable_release(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("pycrypto==2.6.1\nclick==8.0.0\n")
    done = audit("--requirements", str(requirements))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "VULNERABLE  pycrypto==2.6.1: PYSEC-2017-94" in done.stdout
    assert "UNCHECKED   click==8.0.0" in done.stdout
