"""Secrets kept in a file beside an SQLite store (the subject key, the signing key)."""

from __future__ import annotations

import os
from collections.abc import Callable


def read_or_create(path: str, make: Callable[[], str]) -> str:
    """The text kept in `path`, written first from `make()` (readable by the owner only)
    if the file is missing. Written whole under a temporary name, then linked: a
    concurrent reader sees no file or the whole secret, and of two creators the first
    link wins (both then read the winner's)."""
    if not os.path.exists(path):
        temporary = f"{path}.{os.getpid()}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(make() + "\n")
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(temporary)
    with open(path, encoding="ascii") as stored:
        return stored.read().strip()
