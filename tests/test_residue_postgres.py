"""Residue on PostgreSQL: after redactions, the old row versions still hold the scrubbed
values (read with pageinspect, tuple by tuple, in the table and its TOAST table); after
`redact maintenance` no tuple does."""

from __future__ import annotations

import secrets

import pytest

from models import database
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


def tuples_holding(marker: bytes) -> dict[str, int]:
    """How many tuples (live or dead) of each table hold `marker`, read raw."""
    found = {}
    with database.connection_context():
        database.execute_sql("CREATE EXTENSION IF NOT EXISTS pageinspect")
        toast = database.execute_sql(
            "SELECT reltoastrelid::regclass::text FROM pg_class WHERE relname = %s",
            ("transaction",),
        ).fetchone()[0]
        for relation in ('"transaction"', toast, "redaction_job_object"):
            count = database.execute_sql(
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
    noise = secrets.token_hex(3000)  # a body TOAST keeps out of line, not compressed away
    with pg_app.test_client() as client:
        jobs = JobsClient(client, add_account("acct0001"), pg_app.services.queue)
        add_records(
            record("P1", text=f"{MARKER} short"),
            record("P2", text=f"{noise[:3000]}{MARKER}{noise[3000:]}"),
            record("P3", to=NUMBER),
            record("KEEP", text=f"{MARKER} kept"),
        )
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

    before = tuples_holding(MARKER.encode())
    # P1's dead version and the live KEEP in the table; P2's old body in the TOAST table
    toast = next(name for name in before if name.startswith("pg_toast"))
    assert before['"transaction"'] == 2 and before[toast] >= 1, before
    assert tuples_holding(NUMBER.encode())['"transaction"'] >= 1  # P3's old version

    assert vacuum_erased(database.obj) == ["transaction", "redaction_job_object", "redaction_job"]

    after = tuples_holding(MARKER.encode())
    assert after == {**dict.fromkeys(after, 0), '"transaction"': 1}, after  # KEEP only
    assert sum(tuples_holding(NUMBER.encode()).values()) == 0
