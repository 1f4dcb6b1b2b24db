"""Headless Debian Chromium for the browser tests (Playwright driving /usr/bin/chromium, never downloaded).

Missing playwright or chromium skips a browser test, unless CI is set: there it fails, so a green CI means
the pages were really opened in a browser.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run",
]  # fmt: skip


def require_browser():
    """playwright's ``sync_playwright``; skips (fails under CI) without playwright or chromium."""
    problem = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        problem, sync_playwright = "playwright is not installed", None
    if problem is None and not CHROMIUM.exists():
        problem = f"{CHROMIUM} is absent (apt-get install -y chromium)"
    if problem:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)
    return sync_playwright
