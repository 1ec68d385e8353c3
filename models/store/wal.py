"""SQLite's write-ahead log, for a data store run in WAL mode (models/store/state.py says
why it is not, for now), and the checkpoints that erase what a log leaves behind.

In WAL mode with `synchronous=full`, a commit appends the pages it changed to `<db>-wal`
and syncs that one file (one fsync), where a rollback journal writes each page twice and
syncs three to five times. On a store with a rollback journal, `checkpoint` is a no-op.

What WAL mode leaves behind is a page's earlier versions: in the main file until a
checkpoint copies the new version over it, and in older WAL frames until the log starts
over. Personal fields are sealed under per-record data keys (models/store/sealing.py) that
a redaction destroys, durably, in the key store before it commits: what lingers is
ciphertext nobody can open. Two things are not sealed, and for them the writer
checkpoints (`checkpoint`, TRUNCATE: every page copied home, `secure_delete` having zeroed
what the scrub freed, the log emptied) before the caller is answered, or when it goes idle:

- records stored before sealing existed and not yet migrated (`redact migrate`): a scrub
  of one checkpoints before its 204 (GroupCommit.erase_after_commit);
- the keyed hashes of numbers in the indexes, which a scrub removes: the idle checkpoint
  (at most WRITER_IDLE_SECONDS after the last write), SQLite's automatic one (every 1,000
  pages) and the log's reuse bound how long an old copy stays in the files.
"""

from __future__ import annotations

import os
import struct

import peewee

# The wal-index header (https://www.sqlite.org/walformat.html, "The WAL-Index Format"):
# mxFrame, the number of valid frames in the WAL, is the 32-bit native-order integer at
# byte 16 of `<db>-shm`.
_MX_FRAME = struct.Struct("=I")
_MX_FRAME_OFFSET = 16


class WalFrames:
    """Counts the frames (pages) in a database's WAL, from its wal-index, without a query."""

    def __init__(self, path: str):
        self.path = f"{path}-shm"
        self._fd = -1
        self._pid: int | None = None

    def __call__(self) -> int:
        """The WAL's valid frames now (0 if there is no WAL yet)."""
        if self._pid != os.getpid():
            try:
                self._fd = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:
                return 0
            self._pid = os.getpid()
        raw = os.pread(self._fd, _MX_FRAME.size, _MX_FRAME_OFFSET)
        return _MX_FRAME.unpack(raw)[0] if len(raw) == _MX_FRAME.size else 0

    def close(self) -> None:
        if self._pid == os.getpid():
            os.close(self._fd)
        self._fd, self._pid = -1, None


def checkpoint(db: peewee.Database) -> bool:
    """Copy every WAL frame into the main file and empty the WAL (TRUNCATE), on `db`'s
    connection in this thread. False if a reader held it back (SQLite waits its busy
    timeout first); the next checkpoint completes it."""
    busy, _, _ = db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    return busy == 0


def erase_residue(db: peewee.Database) -> None:
    """After a rewrite of values in clear (sealing a store written before sealing): on
    SQLite, checkpoint so that no earlier page version stays in the files."""
    if isinstance(db, peewee.SqliteDatabase) and db.database != ":memory:":
        with db.connection_context():
            checkpoint(db)
