"""Residue on PostgreSQL: after redactions, the old row versions still hold the scrubbed
(sealed) values and the key store's the destroyed keys (read with pageinspect, tuple by
tuple, in the tables and the TOAST table); after `redact maintenance` no tuple does."""

from __future__ import annotations

import secrets

import pytest

from models import Transaction, database
from models.worker.maintenance import vacuum_erased
from tests.support import (
    POSTGRES_URL,
    JobsClient,
    add_account,
    add_records,
    record,
    require_service,
)

pytestmark = pytest.mark.postgres

MARKER = "PGMARKER-5e1d"
NUMBER = "447700966601"


def tuples_holding(marker: bytes, db=None, relations=None) -> dict[str, int]:
    """How many tuples (live or dead) of each table hold `marker`, read raw (by default
    the data store's records, their TOAST table and job objects)."""
    db = db or database
    found = {}
    with db.connection_context():
        db.execute_sql("CREATE EXTENSION IF NOT EXISTS pageinspect")
        if relations is None:
            toast = db.execute_sql(
                "SELECT reltoastrelid::regclass::text FROM pg_class WHERE relname = %s",
                ("transaction",),
            ).fetchone()[0]
            relations = ('"transaction"', toast, "redaction_job_object")
        for relation in relations:
            count = db.execute_sql(
                "SELECT count(*) FROM generate_series(0, "
                f"  pg_relation_size('{relation}') / current_setting('block_size')::int - 1)"
                " AS block, "
                f"LATERAL heap_page_items(get_raw_page('{relation}', block::int)) AS item "
                "WHERE position(%s in item.t_data) > 0",
                (marker,),
            ).fetchone()[0]
            found[relation] = count
    return found


@pytest.fixture
def pg_app(make_app, tmp_path):
    require_service("PostgreSQL", "127.0.0.1", 5432)
    return make_app(POSTGRES_URL, queue_url=f"sqlite:///{tmp_path / 'q.db'}")


def test_maintenance_leaves_no_tuple_with_a_scrubbed_value(pg_app):
    """The fields are sealed, so their plaintext is in no tuple, ever; their sealed bytes
    stay in the dead versions a redaction leaves, and the destroyed keys' wrapped bytes in
    the key store's, until `redact maintenance`."""
    noise = secrets.token_hex(3000)  # a body TOAST keeps out of line, not compressed away
    keystore = pg_app.services.store.keystore
    with pg_app.test_client() as client:
        jobs = JobsClient(client, add_account("acct0001"), pg_app.services.queue)
        add_records(
            record("P1", text=f"{MARKER} short"),
            record("P2", text=f"{noise[:3000]}{MARKER}{noise[3000:]}"),
            record("P3", to=NUMBER),
            record("KEEP", text=f"{MARKER} kept"),
        )
        with database.connection_context():
            sealed = {t.id: t for t in Transaction.select()}
        wrapped = {
            key_id: bytes(wrapped)
            for key_id, wrapped in keystore.db.execute_sql(
                "SELECT id, wrapped FROM data_key WHERE id IN (%s, %s)",
                (sealed["P1"].key_id, sealed["P3"].key_id),
            ).fetchall()
        }
        for transaction_id in ("P1", "P2"):
            assert (
                client.post(
                    "/v1/redact/transaction",
                    json={"id": transaction_id, "product": "sms"},
                    headers=jobs.headers,
                ).status_code
                == 204
            )
        job = jobs.ready(subjects=[NUMBER])
        jobs.action(job["id"], "run", expect=202)
        jobs.drain()
        assert jobs.get(job["id"])["status"] == "succeeded"

    for plain in (MARKER, NUMBER):  # never stored in clear
        assert sum(tuples_holding(plain.encode()).values()) == 0
    before = tuples_holding(sealed["P1"].body.encode())
    assert before['"transaction"'] == 1, before  # P1's dead version
    toast = next(name for name in before if name.startswith("pg_toast"))
    assert tuples_holding(sealed["P2"].body[100:160].encode())[toast] >= 1
    assert tuples_holding(sealed["P3"].recipient.encode())['"transaction"'] >= 1
    keys = ("data_key",)
    for key in wrapped.values():
        assert tuples_holding(key, keystore.db, keys) == {"data_key": 1}  # a dead version

    assert vacuum_erased(database.obj) == ["transaction", "redaction_job_object", "redaction_job"]
    keystore.vacuum()

    for marker in (sealed["P1"].body, sealed["P2"].body[100:160], sealed["P3"].recipient):
        assert sum(tuples_holding(marker.encode()).values()) == 0
    assert tuples_holding(sealed["KEEP"].body.encode())['"transaction"'] == 1  # still there
    for key in wrapped.values():
        assert tuples_holding(key, keystore.db, keys) == {"data_key": 0}
