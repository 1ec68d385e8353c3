"""A bulk load on PostgreSQL leaves the planner statistics it can plan redactions by."""

from __future__ import annotations

import pytest

from models import database
from tests.support import POSTGRES_URL, add_account, add_records, record

pytestmark = pytest.mark.postgres

SCRUB = """EXPLAIN WITH scrub (id, api_key) AS (VALUES ('L00007', 'acct0001'))
UPDATE "transaction" SET body = 'REDACTED' FROM scrub
WHERE "transaction".id = scrub.id AND "transaction".api_key = scrub.api_key
AND "transaction".redacted_at IS NULL"""


def test_after_a_bulk_load_a_scrub_finds_its_record_by_the_primary_key(make_app):
    make_app(POSTGRES_URL)
    add_account("acct0001")
    add_records(*(record(f"L{n:05d}") for n in range(5000)))  # one load, as the CLI's
    with database.connection_context():
        plan = "\n".join(row for (row,) in database.execute_sql(SCRUB).fetchall())
    # not the index of the account's unredacted records, walked in full for each one
    assert "transaction_pkey" in plan, plan
