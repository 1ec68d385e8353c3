"""The documentation page in a real browser: headless Chromium (Debian's package) driven
by Playwright loads /v1/redact/ui/, authorises with basic auth, runs "Try it out" on the
redact operation against a demo record and sees the 204, and switches to the jobs
contract."""

from __future__ import annotations

import json
import os
import pathlib

import pytest

from models import Transaction
from tests.support import served, store_at, unavailable

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def chromium():
    if not pathlib.Path(CHROMIUM).exists():
        unavailable(f"{CHROMIUM} is not installed (apt install chromium; .ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def demo_server(env, tmp_path):
    """`redact serve --demo`: (its base URL, its database URL)."""
    with served(env, tmp_path, "--demo", timeout=30) as (_, base):
        yield base, env["DATABASE_URL"]


def test_try_it_out_redacts_a_demo_record(chromium, demo_server):
    base, database_url = demo_server
    page = chromium.new_page()
    page.goto(f"{base}/v1/redact/ui/")
    page.wait_for_selector("#operations-default-redact-message", timeout=30000)

    authorize(page)
    operation = page.locator("#operations-default-redact-message")
    operation.locator(".opblock-summary").click()
    operation.locator("button.try-out__btn").click()
    operation.locator("textarea.body-param__text").fill(
        json.dumps({"id": "0A0000000DEMO0001", "product": "sms", "type": "outbound"})
    )
    operation.locator("button.execute").click()
    status = operation.locator(".live-responses-table .response .response-col_status")
    status.first.wait_for(timeout=30000)
    assert status.first.inner_text().strip().startswith("204")

    with store_at(database_url):
        record = Transaction.get(Transaction.id == "0A0000000DEMO0001")
    assert record.redacted_at is not None and record.body == "REDACTED"


def test_the_picker_offers_the_jobs_contract(chromium, demo_server):
    """The jobs contract, chosen in the picker, is shown and can be tried: listing the
    demo account's jobs answers 200 with none."""
    base, _ = demo_server
    page = chromium.new_page()
    page.goto(f"{base}/v1/redact/ui/")
    page.wait_for_selector("#operations-default-redact-message", timeout=30000)
    page.select_option("select#select", label="Redaction jobs")
    page.wait_for_selector("#operations-default-create-job", timeout=30000)
    assert page.locator("#operations-default-redact-message").count() == 0
    titles = page.locator(".opblock-summary-operation-id, .opblock-summary-path").all_inner_texts()
    assert any("/jobs" in title for title in titles), titles

    authorize(page)
    status, body = try_out(page, "list-jobs")
    assert status.startswith("200") and json.loads(body)["data"] == []


def test_the_picker_offers_the_records_contract(chromium, demo_server):
    """The records contract, chosen in the picker, is shown and can be tried: reading the
    demo account's policies answers 200 with every product off."""
    base, _ = demo_server
    page = chromium.new_page()
    page.goto(f"{base}/v1/redact/ui/")
    page.wait_for_selector("#operations-default-redact-message", timeout=30000)
    page.select_option("select#select", label="Records, retention and holds")
    page.wait_for_selector("#operations-default-store-records", timeout=30000)
    assert page.locator("#operations-default-create-job").count() == 0

    authorize(page)
    status, body = try_out(page, "retrieve-policies")
    assert status.startswith("200")
    assert json.loads(body)["products"]["sms"]["auto_redact"] == "off"


def authorize(page) -> None:
    """Authorise Swagger UI with the demo account."""
    page.click("button.authorize")
    page.fill(".auth-container input[type=text]", "demo0001")
    page.fill(".auth-container input[type=password]", "demo-secret-0001")
    page.click(".auth-container .auth-btn-wrapper button.authorize")
    page.click(".auth-container .auth-btn-wrapper button.btn-done")


def try_out(page, operation_id: str) -> tuple[str, str]:
    """Run "Try it out" on an operation without parameters: its status and body."""
    operation = page.locator(f"#operations-default-{operation_id}")
    operation.locator(".opblock-summary").click()
    operation.locator("button.try-out__btn").click()
    operation.locator("button.execute").click()
    status = operation.locator(".live-responses-table .response .response-col_status")
    status.first.wait_for(timeout=30000)
    body = operation.locator(".live-responses-table .response-col_description pre").first
    return status.first.inner_text().strip(), body.inner_text()
