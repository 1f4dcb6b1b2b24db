"""API token: every route but the page and /healthz needs it; header or the page's cookie; 401 otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from serve_helpers import png_bytes
from vaedx.serve.app import create_app
from vaedx.serve.auth import check_token, presented

TOKEN = "s3cret-token-for-tests-0123456789"


@pytest.fixture(scope="module")
def guarded(run_dir: Path):
    with TestClient(create_app(run_dir, token=TOKEN)) as c:
        yield c


def _post(c: TestClient, **kw):
    return c.post("/v1/predict", files={"file": ("a.png", png_bytes(), "image/png")}, **kw)


def test_without_or_with_a_wrong_token_every_route_is_401(guarded) -> None:
    wrong = {"Authorization": "Bearer wrong"}
    for r in (_post(guarded), guarded.get("/v1/model"), guarded.get("/openapi.json"),
              guarded.get("/v1/volumes/abc"), _post(guarded, headers=wrong)):  # fmt: skip
        assert r.status_code == 401, r.text
        assert r.headers["www-authenticate"] == "Bearer"
        assert "token" in r.json()["detail"]
        assert "access-control-allow-origin" not in r.headers  # no CORS


def test_the_token_opens_them_by_header_or_cookie(guarded) -> None:
    assert _post(guarded, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    guarded.cookies.set("vaedx_token", TOKEN)
    try:
        assert guarded.get("/v1/model").status_code == 200
    finally:
        guarded.cookies.clear()


def test_page_and_health_stay_open(guarded) -> None:
    assert guarded.get("/healthz").status_code == 200
    page = guarded.get("/")
    assert page.status_code == 200 and "vaedx" in page.text
    assert guarded.get("/static/app.js").status_code == 200


def test_no_body_is_read_before_the_token_is_checked(guarded) -> None:
    """A huge upload without the token is answered 401, not 413: nothing of it was looked at."""
    raw = {"content-type": "application/octet-stream"}
    r = guarded.post("/v1/predict", content=b"x" * (30 << 20), headers=raw)
    assert r.status_code == 401


def test_short_tokens_are_refused_and_cookies_parse() -> None:
    with pytest.raises(ValueError, match="at least 16 characters"):
        check_token("short")
    assert presented({b"cookie": b"other=1; vaedx_token=abc%2Fdef"}) == "abc/def"
    assert presented({b"authorization": b"Bearer  tok "}) == "tok"
    assert presented({b"cookie": b"\x00bad"}) is None
