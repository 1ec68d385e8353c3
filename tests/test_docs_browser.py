"""The documentation page in a real browser: headless Chromium (Debian's package) driven
by Playwright loads /v1/redact/ui/, authorises with basic auth, runs "Try it out" on the
redact operation against a demo record and sees the 204."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

from models import Transaction, database, open_store

from .conftest import IN_CI, SUBJECT_KEY, wait_until_serving
from .services import free_port

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
        if IN_CI:
            pytest.fail(
                f"{CHROMIUM} is missing, and CI must test the docs page in it "
                "(.ci/run installs Debian's chromium)"
            )
        pytest.skip(f"{CHROMIUM} is not installed (apt install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def demo_server(tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'redact.db'}",
        "REDACT_SUBJECT_KEY": SUBJECT_KEY,
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--demo", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    wait_until_serving(server, base, timeout=30)
    yield base, env["DATABASE_URL"]
    server.terminate()
    server.wait(timeout=30)


def test_try_it_out_redacts_a_demo_record(chromium, demo_server):
    base, database_url = demo_server
    page = chromium.new_page()
    page.goto(f"{base}/v1/redact/ui/")
    page.wait_for_selector("#operations-default-redact-message", timeout=30000)

    page.click("button.authorize")
    page.fill(".auth-container input[type=text]", "demo0001")
    page.fill(".auth-container input[type=password]", "demo-secret-0001")
    page.click(".auth-container .auth-btn-wrapper button.authorize")
    page.click(".auth-container .auth-btn-wrapper button.btn-done")

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

    open_store(database_url, subject_key=SUBJECT_KEY.encode())
    with database.connection_context():
        record = Transaction.get_by_id("0A0000000DEMO0001")
    assert record.redacted_at is not None and record.body == "REDACTED"


def test_the_picker_offers_the_jobs_contract(chromium, demo_server):
    base, _ = demo_server
    page = chromium.new_page()
    page.goto(f"{base}/v1/redact/ui/")
    page.wait_for_selector("#operations-default-redact-message", timeout=30000)
    page.select_option("select#select", label="Redaction jobs")
    page.wait_for_selector("#operations-default-create-job", timeout=30000)
