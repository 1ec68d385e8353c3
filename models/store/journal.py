"""Pages a write transaction has changed, counted from SQLite's rollback journal.

Before a page is first changed in a transaction, SQLite appends its original content to
`<db>-journal`: the page number, the page and a checksum (`page_size + 8` bytes), after
one header no larger than a sector (https://www.sqlite.org/fileformat.html, "The Rollback
Journal"). Just before the commit, the journal's size divided by a record's size (rounded
down, which drops the header) is the number of pages the commit writes back: one `stat`,
no query. The group commit reports it per batch (`Commit.pages`).

SQLite's WAL mode would write each page once and sync once a commit (a trial measured
3,795 against 2,817 redactions/s in bench/commit.py's harness), but it maps the `-shm`
index into memory: a process that opened a new connection after the store's files became
unwritable (immutable, as tests/test_health.py makes them) died of SIGBUS where the
rollback journal answers 503. The data store keeps the journal.
"""

from __future__ import annotations

import os


class JournalPages:
    def __init__(self, path: str):
        """Counts for the SQLite database file at `path`."""
        self.path = path
        self._record_size: int | None = None

    def __call__(self) -> int:
        """Pages the open write transaction on `path` has changed so far."""
        if self._record_size is None:
            self._record_size = _page_size(self.path) + 8
        try:
            return os.stat(f"{self.path}-journal").st_size // self._record_size
        except FileNotFoundError:  # nothing changed yet
            return 0


def _page_size(path: str) -> int:
    """The page size in the database header: 2 bytes at offset 16, big-endian, 1 meaning
    65,536 (https://www.sqlite.org/fileformat.html, "The Database Header")."""
    with open(path, "rb") as file:
        file.seek(16)
        size = int.from_bytes(file.read(2), "big")
    return 65536 if size == 1 else size
