"""The lock SQLite writers of several processes (workers) on one file take turns by."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator


class ProcessWriteLock:
    """Serialises SQLite write transactions of several processes (workers) on one file.

    SQLite's own busy handler waits by sleeping with growing back-off, so under steady
    writes from two processes one of them can sleep for seconds; `flock` wakes the next
    writer as soon as the lock is free. The lock file lives beside the database.
    """

    def __init__(self, path: str):
        self.path = path
        self._fd = -1
        self._pid: int | None = None

    def __enter__(self) -> None:
        if self._pid != os.getpid():  # opened after fork: a shared descriptor shares locks
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            self._pid = os.getpid()
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *exc) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Close the lock file (opened again on the next use)."""
        if self._pid == os.getpid():
            os.close(self._fd)
        self._fd, self._pid = -1, None


@contextlib.contextmanager
def held_apart(path: str) -> Iterator[None]:
    """The lock at `path` for the block, on a descriptor of its own: it excludes this
    process's own writer thread too, which holds the lock through another descriptor."""
    lock = ProcessWriteLock(path)
    try:
        with lock:
            yield
    finally:
        lock.close()
