"""The web page in a real (headless Debian) Chromium: upload a PneumoniaMNIST image, see score and overlay.

Skipped when /usr/bin/chromium or playwright is missing, unless CI is set: in CI that is a failure, so a
green CI means the page was really exercised. Browsers are never downloaded (no `playwright install`).
"""

from __future__ import annotations

import re
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from browser_helpers import ARGS, CHROMIUM, require_browser

DIAGNOSIS = r"(normal|pneumonia) \(probability [<>]? ?\d+\.\d%\)"  # the page prints > 99.9% at the extremes


def _open_chooser_by_keyboard(page):
    """Enter on the focused drop zone must open the file chooser. A freshly started Chromium sometimes drops
    the very first chooser event, so the key press is retried (still from the keyboard, still on the zone)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for _ in range(3):
        try:
            with page.expect_file_chooser(timeout=10_000) as chooser:
                page.keyboard.press("Enter")
            return chooser.value
        except PlaywrightTimeout:
            page.focus("#drop-zone")
    pytest.fail("Enter on the drop zone never opened the file chooser")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def diagnosis_dir(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vaedx.diagnose import fit_diagnosis

    out = tmp_path_factory.mktemp("browser_diag") / "diag"
    fit_diagnosis(run_dir, run_dir.parent / "store", out=out, candidates=("logreg",), n_splits=2)
    return out


@pytest.fixture(scope="module")
def server_url(run_dir: Path, diagnosis_dir: Path):
    import uvicorn

    from vaedx.serve.app import create_app

    port = _free_port()
    app = create_app(run_dir, diagnosis_dir=diagnosis_dir)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.mark.slow
def test_upload_shows_score_overlay_and_caveat(server_url, pneumonia_npz, tmp_path):
    sync_playwright = require_browser()
    image = np.load(pneumonia_npz)["test_images"][0]
    png = tmp_path / "pneumoniamnist_test0.png"
    PILImage.fromarray(image).save(png)
    requests: list[str] = []
    console_errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page()
            page.on("request", lambda r: requests.append(r.url))
            page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
            page.goto(server_url + "/")
            assert "not for clinical use" in page.inner_text(".caveat")
            # keyboard: the first Tab stop is the drop zone, and Enter opens the file chooser
            page.keyboard.press("Tab")
            assert page.evaluate("document.activeElement.id") == "drop-zone"
            _open_chooser_by_keyboard(page).set_files(str(png))
            page.wait_for_selector("#results:not([hidden])", timeout=60_000)
            score = float(page.inner_text("#score"))
            assert np.isfinite(score) and score > 0
            assert re.fullmatch(DIAGNOSIS, page.inner_text("#diagnosis"))
            assert page.inner_text("#flag") == "no calibrated threshold"
            for img in ("#input-img", "#heatmap-img", "#contour-img", "#recon-img"):
                assert page.get_attribute(img, "src").startswith("data:image/png;base64,")
                assert page.evaluate(f"document.querySelector('{img}').naturalWidth") == 16
            # the opacity slider is labelled and keyboard operable
            assert page.get_by_label("Heatmap opacity").count() == 1
            page.focus("#opacity")
            page.keyboard.press("ArrowLeft")
            assert page.evaluate("document.getElementById('heatmap-img').style.opacity") == "0.55"
            assert page.inner_text("#opacity-value") == "55%"
            shot = tmp_path / "viewer.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 1000
            print(f"screenshot: {shot}")
        finally:
            browser.close()
    assert all(u.startswith(server_url) or u.startswith("data:") for u in requests), requests
    assert not console_errors, console_errors


@pytest.mark.slow
def test_upload_of_a_real_lgg_slice_shows_diagnosis_and_overlay(server_url, lgg_dir, tmp_path):
    """A 256x256 RGB FLAIR slice with a tumour: the service converts and resizes it for the model."""
    sync_playwright = require_browser()
    png = lgg_dir / "TCGA_CS_4941_19960909" / "TCGA_CS_4941_19960909_12.png"
    console_errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page()
            page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
            page.goto(server_url + "/")
            page.set_input_files("#file-input", str(png))
            page.wait_for_selector("#results:not([hidden])", timeout=60_000)
            assert np.isfinite(float(page.inner_text("#score")))
            assert re.fullmatch(DIAGNOSIS, page.inner_text("#diagnosis"))
            for img in ("#input-img", "#heatmap-img", "#recon-img"):
                assert page.evaluate(f"document.querySelector('{img}').naturalWidth") == 16
            page.screenshot(path=str(tmp_path / "viewer_lgg.png"), full_page=True)
        finally:
            browser.close()
    assert not console_errors, console_errors


def _wait_until(page, script: str, timeout: float = 20.0) -> None:
    """Poll ``script`` with page.evaluate (wait_for_function evals a string, which the CSP forbids)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(script):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {script}")
        time.sleep(0.05)


@pytest.mark.slow
def test_volume_upload_slider_overlay_and_downloads(lgg_run, lgg_nifti_path, tmp_path):
    """A real LGG NIfTI: every slice scored, the slider and arrow keys change the overlay, links download
    the map and mask NIfTIs in the file's own space."""
    import nibabel as nib

    from browser_helpers import LoopbackServer
    from vaedx.serve.app import create_app

    sync_playwright = require_browser()
    console_errors: list[str] = []
    with LoopbackServer(create_app(lgg_run)) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 900, "height": 900}, accept_downloads=True)
            page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
            page.goto(url + "/")
            page.set_input_files("#volume-input", str(lgg_nifti_path))
            page.wait_for_selector("#volume-results:not([hidden])", timeout=60_000)
            n = nib.load(lgg_nifti_path).shape[2]
            assert page.inner_text("#slice-value") == f"{n // 2 + 1} of {n}"
            first = page.get_attribute("#volume-img", "src")
            score = page.inner_text("#slice-score")
            _wait_until(page, "document.getElementById('volume-img').naturalWidth === 256")
            assert page.evaluate("document.activeElement.id") == "slice-slider"
            page.keyboard.press("ArrowRight")
            page.keyboard.press("ArrowRight")
            assert page.inner_text("#slice-value") == f"{n // 2 + 3} of {n}"
            second = page.get_attribute("#volume-img", "src")
            assert second != first and second.endswith(f"/slices/{n // 2 + 2}.png")
            assert page.inner_text("#slice-score") != score
            _wait_until(page, "document.getElementById('volume-img').complete")
            page.focus("#volume-img")  # arrow keys work on the image too
            page.keyboard.press("ArrowLeft")
            assert page.get_attribute("#volume-img", "src").endswith(f"/slices/{n // 2 + 1}.png")
            page.fill("#slice-slider", "0")
            page.dispatch_event("#slice-slider", "input")
            assert page.inner_text("#slice-value") == f"1 of {n}"
            assert "mm³" in page.inner_text("#volume-lesion")
            for link, name in (("#map-link", "residual_map"), ("#mask-link", "residual_mask")):
                with page.expect_download() as dl:
                    page.click(link)
                saved = tmp_path / f"{name}.nii.gz"
                dl.value.save_as(saved)
                assert dl.value.suggested_filename == f"vaedx_{name}.nii.gz"
                img = nib.load(saved)
                assert img.shape == nib.load(lgg_nifti_path).shape
            page.fill("#slice-slider", str(n // 2))
            page.dispatch_event("#slice-slider", "input")
            _wait_until(page, "document.getElementById('volume-img').complete")
            shot = tmp_path / "viewer_volume.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 1000
        finally:
            browser.close()
    assert not console_errors, console_errors


def test_page_asks_for_the_token_and_then_works(run_dir):
    """A token-guarded service: the page asks for the token once, keeps it in a same-site cookie, and its
    requests (the model facts, image loads) then carry it."""
    from browser_helpers import LoopbackServer
    from vaedx.serve.app import create_app

    token = "browser-token-0123456789abcdef"
    sync_playwright = require_browser()
    asked: list[str] = []
    with LoopbackServer(create_app(run_dir, token=token)) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page()

            def answer(dialog):  # type: ignore[no-untyped-def]
                asked.append(dialog.message)
                dialog.accept(token)

            page.on("dialog", answer)
            page.goto(url + "/")
            deadline = time.monotonic() + 30  # polled from here: the page's CSP forbids evaluated scripts
            while not page.inner_text("#model-info").strip():
                if time.monotonic() > deadline:
                    pytest.fail("the model facts never appeared after the token was given")
                page.wait_for_timeout(100)
            assert asked == ["This vaedx service needs its API token:"]
            cookies = {c["name"]: c for c in page.context.cookies()}
            assert cookies["vaedx_token"]["value"] == token and cookies["vaedx_token"]["sameSite"] == "Strict"
        finally:
            browser.close()
