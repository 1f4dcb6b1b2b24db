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


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LoopbackServer:
    """``with LoopbackServer(app) as url:`` a real uvicorn on 127.0.0.1 in a thread, stopped on exit.

    Real sockets matter where TestClient cannot tell: how a client sees a 413 sent before it finished
    uploading, and what a browser receives.
    """

    def __init__(self, app, timeout: float = 20.0):  # type: ignore[no-untyped-def]
        self.app, self.timeout = app, timeout

    def __enter__(self) -> str:
        import threading
        import time

        import uvicorn

        port = free_port()
        config = uvicorn.Config(self.app, host="127.0.0.1", port=port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + self.timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                pytest.fail("uvicorn did not start")
            time.sleep(0.05)
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
