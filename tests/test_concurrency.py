"""Concurrent redactions share transactions (GroupCommit): each record is scrubbed once,
audited once, and every caller gets its own outcome, also when one batch mixes
successes, duplicates and errors."""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime
import sqlite3
import threading
import time

import peewee
import pytest

from models import (
    PrematureRedaction,
    RecordHeld,
    RecordNotFound,
    RedactionAudit,
    Transaction,
    current_store,
    database,
    redact_transaction,
)
from models.erasure import redaction
from models.erasure.redaction import redact_acknowledged, redact_batch, redaction_request
from tests.support import (
    POSTGRES_URL,
    START,
    add_account,
    add_records,
    hold_sms,
    opened,
    record,
    require_service,
)


def sms(transaction_id: str, api_key: str = "acct0001") -> dict:
    """The arguments of a redaction of the SMS `transaction_id` at START."""
    return {
        "api_key": api_key,
        "products": {"sms"},
        "transaction_id": transaction_id,
        "product": "sms",
        "direction": None,
        "now": START,
        "min_age_seconds": 3600,
        "trace_id": "t" * 32,
    }


def redact(transaction_id: str, api_key: str = "acct0001"):
    try:
        return redact_transaction(**sms(transaction_id, api_key))
    except (RecordNotFound, PrematureRedaction) as exc:
        return type(exc).__name__


def test_concurrent_requests_each_get_their_outcome(app):
    add_account("acct0001")
    add_account("acct0002")
    ids = [f"0A00000000CONC{n:03d}" for n in range(60)]
    add_records(
        *(record(i) for i in ids),
        record("0A00000000YOUNG01", age=datetime.timedelta(minutes=1)),
        record("0A00000000OTHER01", api_key="acct0002"),
    )
    calls = [(i,) for i in ids] * 2 + [
        ("0A00000000YOUNG01",),
        ("0A00000000OTHER01",),
        ("0A00000000MISSING",),
    ]
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda args: redact(*args), calls))

    first, second = results[:60], results[60:120]
    # each id was redacted twice concurrently: exactly one call scrubbed it
    assert all(a is not b and {a, b} == {True, False} for a, b in zip(first, second, strict=True))
    assert results[120:] == ["PrematureRedaction", "RecordNotFound", "RecordNotFound"]
    with database.connection_context():
        assert Transaction.select().where(Transaction.redacted_at.is_null(False)).count() == 60
        assert RedactionAudit.select().count() == 60
        assert {a.transaction_id for a in RedactionAudit.select()} == set(ids)
        assert (
            opened(Transaction.get(Transaction.id == "0A00000000OTHER01")).sender == "447700900001"
        )


def run_concurrently(batch_fn, items, expected: type[Exception]) -> list:
    """Each item through GroupCommit from 8 threads; an `expected` error as its message."""

    def call(item):
        try:
            return current_store().group_commit.run(batch_fn, item)
        except expected as exc:
            return str(exc)

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(call, items))


def test_a_failing_batch_is_rolled_back_for_every_caller(app):
    """GroupCommit's promise: outcomes only from a committed transaction. A batch whose
    function fails leaves nothing behind and raises to each of its callers."""

    def write_then_fail(items):
        for item in items:
            RedactionAudit.create(
                at=START, api_key="acct0001", transaction_id=item, product="sms", trace_id="t" * 32
            )
        raise RuntimeError("disk full")

    results = run_concurrently(write_then_fail, [f"id{n}" for n in range(40)], RuntimeError)
    assert results == ["disk full"] * 40
    with database.connection_context():
        assert RedactionAudit.select().count() == 0


def test_outcome_exceptions_reach_only_their_caller(app):
    def half_refused(items):
        for i in items:
            if i % 2 == 0:
                RedactionAudit.create(
                    at=START, api_key="a", transaction_id=i, product="sms", trace_id="t"
                )
        return [i if i % 2 == 0 else ValueError(f"odd {i}") for i in items]

    results = run_concurrently(half_refused, range(40), ValueError)
    assert results == [i if i % 2 == 0 else f"odd {i}" for i in range(40)]
    with database.connection_context():
        assert RedactionAudit.select().count() == 20


@pytest.mark.postgres
def test_concurrent_redactions_need_few_connections(make_app, clock):
    """Batches borrow one pooled connection each, so 16 threads do not open 16 PostgreSQL
    connections (the server's default limit is 100 for every worker together)."""
    import psycopg2

    require_service("PostgreSQL", "127.0.0.1", 5432)
    make_app(POSTGRES_URL)
    add_account("acct0001")
    ids = [f"0A00000000POOL{n:03d}" for n in range(64)]
    add_records(*(record(i) for i in ids))
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        assert list(pool.map(redact, ids)) == [True] * len(ids)
    database.close()
    watcher = psycopg2.connect(POSTGRES_URL)
    with watcher, watcher.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
        )
        assert cursor.fetchone()[0] <= 3
    watcher.close()


def _preparable(call, prepare):
    """A batch function for GroupCommit with a `prepare` step."""

    def batch_fn(items):
        return call(items)

    batch_fn.prepare = prepare  # type: ignore[attr-defined]
    return batch_fn


def _audit(item: str) -> None:
    RedactionAudit.create(
        at=START, api_key="acct0001", transaction_id=item, product="sms", trace_id="t" * 32
    )


def _audited(item: str) -> int:
    return RedactionAudit.select().where(RedactionAudit.transaction_id == item).count()


class Ahead:
    """A leading batch that waits, its transaction open on the writer thread, until the
    test has queued the units that follow it (`lead(write)`), and a following batch
    function (`follow`) that records what its `prepare` step saw."""

    def __init__(self, db_path=None, fail_commit: bool = False):
        self.db_path = db_path  # SQLite: also look from a connection of its own
        self.fail_commit = fail_commit
        self.started, self.go = threading.Event(), threading.Event()
        # each prepare: (items, "lead" audit rows the writer saw, those another connection saw)
        self.prepared: list[tuple[list, int, int | None]] = []
        self.reported: list[int] = []  # at each prepare, the commits reported so far
        self.commits: list = []
        self.follow = _preparable(lambda items: self._prepare(items)(), self._prepare)

    def lead(self, write):
        def run(items):
            self.started.set()
            assert self.go.wait(10)
            outcomes = write(items)
            if self.fail_commit:  # a row checked only at the commit, which it fails
                database.execute_sql("INSERT INTO ahead_child (parent) VALUES (999)")
            return outcomes

        return _preparable(run, lambda items: lambda: run(items))

    def _prepare(self, items):
        elsewhere = None
        if self.db_path is not None:
            with contextlib.closing(sqlite3.connect(self.db_path)) as other:
                query = "SELECT count(*) FROM redaction_audit WHERE transaction_id = 'lead'"
                elsewhere = other.execute(query).fetchone()[0]
        self.prepared.append((list(items), _audited("lead"), elsewhere))
        self.reported.append(len(self.commits))

        def finish():
            for item in items:
                _audit(item)
            return items

        return finish

    def queue(self, lead_fn, lead_item, following: list[tuple]) -> list:
        """Queue the leading unit, then (once its batch runs) `following`; the futures."""
        group_commit = current_store().group_commit
        observer = group_commit.observer  # the service's metrics, a test's own

        def observe(commit):
            self.commits.append(commit)
            if observer is not None:
                observer(commit)

        group_commit.observer = observe
        futures = [group_commit.submit(lead_fn, lead_item)]
        assert self.started.wait(10)
        futures += [group_commit.submit(fn, item) for fn, item in following]
        self.go.set()
        return futures


def _deferred_constraint():
    """A table whose rows are checked at the commit: one naming no parent fails it."""
    with database.connection_context():
        database.execute_sql("DROP TABLE IF EXISTS ahead_child")
        database.execute_sql("DROP TABLE IF EXISTS ahead_parent")
        database.execute_sql("CREATE TABLE ahead_parent (id INTEGER PRIMARY KEY)")
        database.execute_sql(
            "CREATE TABLE ahead_child (parent INTEGER REFERENCES ahead_parent (id)"
            " DEFERRABLE INITIALLY DEFERRED)"
        )


def test_a_few_units_waiting_are_prepared_before_the_commit_ahead_of_them(make_app, tmp_path):
    """Units that queued behind a small batch are prepared in its transaction, before its
    commit (the Redact API's keys are destroyed while it syncs), and committed in their
    own right after: each caller gets its outcome, each write is there once."""
    db_path = tmp_path / "redact.db"
    make_app(f"sqlite:///{db_path}")
    ahead = Ahead(db_path)
    lead = ahead.lead(lambda items: [_audit(item) or item for item in items])
    futures = ahead.queue(lead, "lead", [(ahead.follow, "b"), (ahead.follow, "c")])
    assert [future.result(10) for future in futures] == ["lead", "b", "c"]
    # Prepared once, inside the leading transaction: the writer saw its row, which
    # another connection could not see yet.
    assert ahead.prepared == [(["b", "c"], 1, 0)]
    assert ahead.reported == [0]
    with database.connection_context():
        assert [_audited(item) for item in ("lead", "b", "c")] == [1, 1, 1]


def test_postgresql_prepares_nothing_ahead(make_app):
    """On PostgreSQL a hold's account lock lasts one transaction, so what a batch checks
    could change between two: the units behind a small batch are prepared and written
    after its commit, in a batch of their own."""
    require_service("PostgreSQL", "127.0.0.1", 5432)
    make_app(POSTGRES_URL)
    ahead = Ahead()
    lead = ahead.lead(lambda items: [_audit(item) or item for item in items])
    futures = ahead.queue(lead, "lead", [(ahead.follow, "b"), (ahead.follow, "c")])
    assert [future.result(10) for future in futures] == ["lead", "b", "c"]
    assert ahead.prepared == [(["b", "c"], 1, None)]
    assert ahead.reported == [1]  # the lead's commit came first


def test_units_prepared_ahead_of_a_commit_that_fails_start_over(make_app, tmp_path):
    """What was prepared in a transaction that then failed to commit read its writes:
    the following batch is done again from the start, and nothing is written twice."""
    make_app(f"sqlite:///{tmp_path / 'redact.db'}")
    _deferred_constraint()
    ahead = Ahead(fail_commit=True)
    lead = ahead.lead(lambda items: [_audit(item) or item for item in items])
    futures = ahead.queue(lead, "lead", [(ahead.follow, "b"), (ahead.follow, "c")])
    with pytest.raises(peewee.IntegrityError):
        futures[0].result(10)
    assert [future.result(10) for future in futures[1:]] == ["b", "c"]
    # First inside the failed transaction (its row seen), then again after it.
    assert [(items, seen) for items, seen, _ in ahead.prepared] == [
        (["b", "c"], 1),
        (["b", "c"], 0),
    ]
    with database.connection_context():
        assert [_audited(item) for item in ("lead", "b", "c")] == [0, 1, 1]


@pytest.mark.parametrize("fail_commit", [False, True], ids=["committed", "failed"])
def test_a_redaction_prepared_behind_one_of_the_same_record(make_app, tmp_path, fail_commit):
    """A redaction checked inside the transaction of an earlier one of the same record
    sees it: already redacted (False) once that commits; if that commit fails instead,
    the later one starts over and redacts it. Either way the record is redacted and
    audited once."""
    make_app(f"sqlite:///{tmp_path / 'redact.db'}")
    _deferred_constraint()
    add_account("acct0001")
    add_records(record("0A00000000AHEAD01"))
    request = redaction_request(**sms("0A00000000AHEAD01"))
    ahead = Ahead(fail_commit=fail_commit)
    lead = ahead.lead(redact_batch)
    futures = ahead.queue(lead, request, [(redact_acknowledged, request)])
    if fail_commit:
        with pytest.raises(peewee.IntegrityError):
            futures[0].result(10)
        assert futures[1].result(10) is True
    else:
        assert [future.result(10) for future in futures] == [True, False]
    current_store().group_commit.close()  # the scrub that was told early has committed
    with database.connection_context():
        assert _audited("0A00000000AHEAD01") == 1
        redacted = Transaction.get(Transaction.id == "0A00000000AHEAD01")
        assert redacted.redacted_at is not None
    assert current_store().keystore.fetch([redacted.key_id]) == {}


def test_a_close_met_while_looking_ahead_still_stops_the_writer(make_app, tmp_path):
    """A close queued while a small batch is about to commit is taken with the units
    waiting behind it: the writer still commits that batch, then stops, and the close
    returns."""
    make_app(f"sqlite:///{tmp_path / 'redact.db'}")
    ahead = Ahead()
    group_commit = current_store().group_commit
    lead = ahead.lead(lambda items: [_audit(item) or item for item in items])
    future = group_commit.submit(lead, "lead")
    assert ahead.started.wait(10)
    closing = threading.Thread(target=group_commit.close, daemon=True)
    closing.start()
    time.sleep(0.2)  # `close` queues its stop at once, then waits for the writer
    ahead.go.set()
    closing.join(10)
    assert not closing.is_alive(), "close() waits on a writer that never stops"
    assert future.result(1) == "lead"
    with database.connection_context():
        assert _audited("lead") == 1


def test_a_hold_made_while_a_redaction_waits_is_never_missed(app):
    """A legal hold of a record made while a redaction of it waits behind a batch (on
    SQLite, checked under that batch's commit) is seen by the redaction (RecordHeld), or
    waits until the redaction has committed: it never commits between the two."""
    add_account("acct0001")
    add_records(record("0A00000000LEAD001"), record("0A00000000HELD001"))
    made = threading.Event()

    def hold():
        hold_sms("0A00000000HELD001")
        made.set()

    holder = threading.Thread(target=hold)
    made_between = []

    def observer(commit):  # on the writer thread, after each commit
        if not holder.is_alive() and not made.is_set():  # the lead's: the hold's chance
            holder.start()
            made_between.append(made.wait(0.3))

    current_store().group_commit.observer = observer
    ahead = Ahead()
    lead = ahead.lead(redact_batch)
    requests = [
        redaction_request(**sms(name)) for name in ("0A00000000LEAD001", "0A00000000HELD001")
    ]
    futures = ahead.queue(lead, requests[0], [(redact_acknowledged, requests[1])])
    assert futures[0].result(10) is True
    outcome = futures[1].exception(10) or futures[1].result(10)
    holder.join(10)
    assert made.is_set()
    current_store().group_commit.close()
    with database.connection_context():
        redacted = Transaction.get(Transaction.id == "0A00000000HELD001").redacted_at
    if made_between == [True]:
        assert isinstance(outcome, RecordHeld) and redacted is None
    else:  # the hold waited for the redaction's commit
        assert outcome is True and redacted is not None


def test_a_transaction_lost_while_preparing_ahead_fails_its_batch(
    make_app, tmp_path, monkeypatch, caplog
):
    """A failure while a following batch is prepared that took the open transaction with
    it (a database error SQLite answers by rolling back) fails the batch ahead, which
    wrote nothing: it is not reported committed. Its caller, told at its key's
    destruction, keeps the redaction: the intent completes it."""
    make_app(f"sqlite:///{tmp_path / 'redact.db'}")
    add_account("acct0001")
    add_records(record("0A00000000LEAD001"), record("0A00000000NEXT001"))
    checked = []

    def held_records(candidates):
        checked.append(candidates)
        if len(checked) == 2:  # the following batch's check, in the lead's transaction
            database.execute_sql("ROLLBACK")
            raise peewee.OperationalError("disk I/O error")
        return set()

    monkeypatch.setattr(redaction, "held_records", held_records)
    ahead = Ahead()
    lead = ahead.lead(redact_acknowledged)
    requests = [
        redaction_request(**sms(name)) for name in ("0A00000000LEAD001", "0A00000000NEXT001")
    ]
    futures = ahead.queue(lead, requests[0], [(redact_acknowledged, requests[1])])
    assert [future.result(10) for future in futures] == [True, True]
    current_store().group_commit.close()
    assert "1 acknowledged redactions did not commit" in caplog.text
    with database.connection_context():
        for name in ("0A00000000LEAD001", "0A00000000NEXT001"):
            assert Transaction.get(Transaction.id == name).redacted_at is not None
            assert _audited(name) == 1
    current_store().keystore.intents.flush()  # settled intents go with the next destroy
    assert current_store().keystore.pending() == {}
