"""The report in a real (headless Debian) Chromium, from file:// with no network: figures and tables render.

Skipped when /usr/bin/chromium or playwright is missing, unless CI is set: in CI that is a failure, so a
green CI means the page was really opened. Browsers are never downloaded (no `playwright install`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from browser_helpers import ARGS, CHROMIUM, require_browser


@pytest.mark.slow
def test_report_renders_figures_and_tables_offline(report: Path, tmp_path: Path):
    sync_playwright = require_browser()
    requests: list[str] = []
    console_errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("request", lambda r: requests.append(r.url))
            page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: console_errors.append(str(e)))
            page.goto(report.resolve().as_uri(), wait_until="load")
            n_img = page.locator("img").count()
            assert n_img >= 12
            widths = page.evaluate("[...document.images].map(i => i.complete ? i.naturalWidth : 0)")
            assert all(w > 0 for w in widths), widths
            assert page.locator("table").count() >= 6
            assert page.locator("section#detection table td").count() > 10
            assert "AUROC" in page.inner_text("section#detection")
            assert "software versions" in page.inner_text("section#repro")
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            print(f"screenshot: {shot}")
        finally:
            browser.close()
    assert all(u.startswith(("file:", "data:")) for u in requests), requests
    assert not console_errors, console_errors
