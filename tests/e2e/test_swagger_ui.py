"""Swagger UI at /v1/docs, used as a person would: headless Chromium (Debian's package; `make test` installs it when
missing) opens the page from the local stack, a screenshot is taken, and one "Try it out" call is made with a
tenant's key. Every request the page makes goes to the stack itself: its assets come with it, no CDN."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
# What a headless Chromium needs here: no sandbox as root, no GPU, and none of its background calls home (this
# machine's network is closed; they would only be refused).
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 20_000


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


def test_swagger_ui_shows_the_api_and_tries_a_call_with_a_key(new_tenant, tmp_path):
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium package")
    from playwright.sync_api import expect, sync_playwright

    client = new_tenant()
    job = client.request("POST", "/v1/queries", json={"sql": "select 1", "wait_timeout": 10}).json()
    requested: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),  # a fresh --user-data-dir
            executable_path=str(CHROMIUM),
            headless=True,
            args=FLAGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.on("request", lambda request: requested.append(request.url))
            page.goto(f"{client.base_url}/v1/docs")
            expect(page.locator(".swagger-ui .info .title")).to_contain_text("Redshift Spectra", timeout=TIMEOUT_MS)
            expect(page.locator(".opblock-summary-path", has_text="/v1/queries").first).to_be_visible()

            screenshot = tmp_path / "docs.png"
            page.screenshot(path=str(screenshot), full_page=True)
            width, height = png_size(screenshot)
            assert width >= 1280 and height >= 900 and screenshot.stat().st_size > 50_000

            # Authorize with the tenant's key, then GET /v1/jobs through "Try it out"
            page.locator(".auth-wrapper button.authorize").click()
            page.locator(".modal-ux input").first.fill(client.api_key)
            page.locator(".modal-ux .auth-btn-wrapper button.authorize").click()
            page.locator(".modal-ux button.btn-done").click()
            operation = page.locator("#operations-jobs-list_jobs_v1_jobs_get")
            operation.locator(".opblock-summary").click()
            operation.locator("button.try-out__btn").click()
            operation.locator("button.execute").click()
            live = operation.locator(".live-responses-table")
            expect(live.locator("tr.response .response-col_status")).to_have_text("200")
            expect(live.locator("tr.response .response-col_description pre").first).to_contain_text(job["job_id"])
            operation.screenshot(path=str(tmp_path / "tried.png"))
        finally:
            browser.close()
    foreign = [url for url in requested if not url.startswith((client.base_url, "data:", "blob:"))]
    assert not foreign, foreign
    # the call really went out, to the stage the page names as its server (the local gateway serves both)
    assert {url.split("?")[0] for url in requested} & {f"{client.base_url}/v1/jobs", f"{client.base_url}/dev/v1/jobs"}
