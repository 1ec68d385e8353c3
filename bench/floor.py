"""The disk's floor under the paced run: the two durable commits of a redaction through the
Redact API, made by raw `sqlite3` with the stores' own pragmas and nothing else, at the
paced run's rate, on the files the service has just served from.

Request i starts at t0 + i/rate (open loop, as bench/paced.py: sleep until SPIN_S before,
then spin). It is one transaction in the key store's file destroying the record's data key
(its row zeroed and stamped, as `KeyStore.destroy` does), which is when the service
answers, then one in the data store's file writing what the scrub writes to the record
(fields `REDACTED`, number hashes NULL, redacted_at) and its audit row. One thread does
them all in turn, so a request whose time comes during the commits before it waits for
them, as a request waits behind the service's writer. Its latency runs from its scheduled
time to the key store's commit.

No HTTP, no checks, no intents, no erasure log, one process: what is left is what any
implementation of these two commits in a row pays on this disk, so the service's paced
p99 cannot be below this one's by design. With `data=False` (--key-only) each request is
the key store's commit alone: the floor of any design that answers once the key's
destruction is durable, whatever it does with the scrub.

    python bench/floor.py DATABASE_FILE [--seconds 60] [--rate 170] [--key-only]

(on a store `bench/run.py` prepared, whose records are not yet redacted; bench/run.py runs
it after the SQLite service's paced run, on that run's files and fresh records.)
"""

from __future__ import annotations

import argparse
import datetime
import pathlib
import sqlite3
import sys
import time

BENCH_DIR = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent))
sys.path.insert(0, str(BENCH_DIR))

from paced import SPIN_S, PacedResult  # noqa: E402

DESTROY = (
    "UPDATE data_key SET kek = NULL, wrapped = NULL, destroyed_at = ? "
    "WHERE id = ? AND destroyed_at IS NULL"
)
SCRUB = (
    "UPDATE \"transaction\" SET sender = 'REDACTED', recipient = 'REDACTED', "
    "body = 'REDACTED', sender_key = NULL, recipient_key = NULL, redacted_at = ? "
    "WHERE id = ? AND api_key = ? AND redacted_at IS NULL"
)
AUDIT = (
    "INSERT INTO redaction_audit (at, api_key, transaction_id, product, trace_id, source) "
    "VALUES (?, ?, ?, 'sms', 'floor', 'api')"
)


def connect(path: str, pragmas: dict) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None)
    for name, value in pragmas.items():
        connection.execute(f"PRAGMA {name} = {value}")
    return connection


def paced_floor(
    database: str, ids: list[str], api_key: str, rate: float, data: bool = True
) -> PacedResult:
    """The floor's paced run over the records `ids` of `api_key` in the store whose data
    file is `database` (its key store beside it); without `data`, the key store's commits
    alone."""
    from models.store.keystore import SQLITE_PRAGMAS as KEY_PRAGMAS
    from models.store.keystore import keystore_file
    from models.store.state import SQLITE_PRAGMAS as DATA_PRAGMAS

    store = connect(database, DATA_PRAGMAS)
    keys = connect(keystore_file(database), KEY_PRAGMAS)
    key_of = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        key_of.update(
            store.execute(
                f'SELECT id, key_id FROM "transaction" WHERE api_key = ? AND id IN ({marks})',
                [api_key, *chunk],
            )
        )
    missing = [record for record in ids if key_of.get(record) is None]
    if missing:
        raise ValueError(f"{len(missing)} records have no data key, e.g. {missing[0]!r}")
    outcomes: list[str] = []
    latencies: list[float] = []
    late: list[float] = []
    t0 = time.perf_counter() + 0.05
    for i, record in enumerate(ids):
        scheduled = t0 + i / rate
        time.sleep(max(0.0, scheduled - SPIN_S - time.perf_counter()))
        while time.perf_counter() < scheduled:
            pass
        late.append(time.perf_counter() - scheduled)
        now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None).isoformat(sep=" ")
        keys.execute("BEGIN IMMEDIATE")
        destroyed = keys.execute(DESTROY, (now, key_of[record])).rowcount
        keys.execute("COMMIT")
        latencies.append(time.perf_counter() - scheduled)  # answered
        scrubbed = 1
        if data:
            store.execute("BEGIN IMMEDIATE")
            scrubbed = store.execute(SCRUB, (now, record, api_key)).rowcount
            store.execute(AUDIT, (now, api_key, record))
            store.execute("COMMIT")
        outcomes.append("204" if destroyed == scrubbed == 1 else "not redacted")
    elapsed = time.perf_counter() - t0
    store.close()
    keys.close()
    return PacedResult.of(latencies, late, outcomes, elapsed)


def fresh_records(database: str, api_key: str, first: str, wanted: int) -> list[str]:
    """Up to `wanted` records of `api_key` from `first` on, in id order, neither redacted
    nor with their key destroyed (a --key-only run leaves records of that kind)."""
    from models.store.keystore import keystore_file

    data, keys = sqlite3.connect(database), sqlite3.connect(keystore_file(database))
    rows = data.execute(
        'SELECT id, key_id FROM "transaction" WHERE api_key = ? AND redacted_at IS NULL '
        "AND key_id IS NOT NULL AND id >= ? ORDER BY id",
        (api_key, first),
    )
    fresh: list[str] = []
    while len(fresh) < wanted and (chunk := rows.fetchmany(500)):
        marks = ", ".join("?" * len(chunk))
        live = {
            key
            for (key,) in keys.execute(
                f"SELECT id FROM data_key WHERE destroyed_at IS NULL AND id IN ({marks})",
                [key for _, key in chunk],
            )
        }
        fresh += [record for record, key in chunk if key in live]
    data.close()
    keys.close()
    return fresh[:wanted]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("database", help="the data store's SQLite file")
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--rate", type=float, default=170)
    parser.add_argument("--key-only", action="store_true", help="the key store's commits alone")
    args = parser.parse_args()
    from bench.run import API_KEY, record_id

    if not pathlib.Path(args.database).is_file():
        print(f"error: no such database file: {args.database}", file=sys.stderr)
        return 2
    wanted = int(args.seconds * args.rate)
    records = fresh_records(args.database, API_KEY, record_id(0), wanted)
    if len(records) < wanted:
        print(
            f"error: {args.database} holds only {len(records)} records of {API_KEY} "
            "neither redacted nor with their key destroyed",
            file=sys.stderr,
        )
        return 2
    result = paced_floor(args.database, records, API_KEY, args.rate, not args.key_only)
    what = "the key store's commit alone" if args.key_only else "two commits a request in a row"
    print(
        f"paced {args.rate:g} req/s, {what}: p50 {result.p50_ms:.2f} "
        f"p99 {result.p99_ms:.2f} max {result.max_ms:.2f} ms (started late "
        f"p99 {result.late_p99_ms:.2f}), {result.outcomes}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
