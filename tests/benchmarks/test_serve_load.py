"""benchmarks/serve_load.py on real PneumoniaMNIST test images: the worker sweep and the mixed load.

Nothing here is timed: the checks are what the service answered (every good image 200, every bad upload a
4xx, no server error), which the benchmark's figures are only worth something with.
"""

from __future__ import annotations

import importlib.util
import socket
import threading
import time
from pathlib import Path

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.realdata


def _bench():
    spec = importlib.util.spec_from_file_location("serve_load", ROOT / "benchmarks" / "serve_load.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


@pytest.fixture(scope="module")
def bench():
    return _bench()


@pytest.fixture(scope="module")
def pneu_run(pneumonia_npz: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny VAE on 128 normal PneumoniaMNIST training images: the answers matter here, not the model."""
    import vaedx
    from vaedx.data.prepare import prepare, prepare_config

    root = tmp_path_factory.mktemp("serve_load")
    prepare(pneumonia_npz, root / "store", prepare_config())
    fast = {"widths": [8, 16], "latent_dim": 4, "batch_size": 32, "max_images": 128, "num_threads": 1}
    vaedx.train(root / "store", root / "run", epochs=1, label_filter=["normal"], **fast)
    return root / "run"


@pytest.fixture(scope="module")
def images(bench, pneumonia_npz: Path, tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    paths = bench.export_pneumonia(6, tmp_path_factory.mktemp("pngs"), pneumonia_npz)
    assert [p.name for p in paths] == [f"test_{i:04d}.png" for i in range(6)]
    return [p.read_bytes() for p in paths]


def test_sweep_starts_one_server_per_worker_count_and_every_image_gets_200(bench, pneu_run, images):
    rows = bench.sweep(pneu_run, images, [1, 2], seconds=2, threads=2)
    assert [(r["workers"], r["threads_per_worker"], r["queue"], r["clients"]) for r in rows] == [
        (1, 2, 2, 2),  # --threads 2 split over the workers as vaedx serve splits it
        (2, 1, 4, 4),
    ]
    for r in rows:
        assert r["requests"] > 0 and r["errors"] == 0 and r["server_errors"] == 0, r
        assert set(r["statuses"]) <= {"good 200", "good 503"} and r["bad_uploads"] == 0
        assert r["scorer"] == "residual" and r["images"] == 6
    text = bench.table(rows).splitlines()
    assert len(text) == 4 and text[2].startswith("| 1 | 2 | 2 | ") and text[3].startswith("| 2 | 1 | 4 | ")


def test_mixed_load_gets_a_4xx_for_every_bad_upload_and_no_server_error(bench, pneu_run, images):
    # one client: never more than workers + queue requests admitted, so no 503 can hide an answer
    (r,) = bench.sweep(pneu_run, images, [1], seconds=2, clients=1, mixed=0.6, max_upload_bytes=1 << 20)
    by_kind: dict[str, set[int]] = {}
    for key in r["statuses"]:
        kind, code = key.rsplit(" ", 1)
        by_kind.setdefault(kind, set()).add(int(code))
    assert set(by_kind) == {"good", *bench.BAD_KINDS}  # every kind of bad upload was sent
    assert by_kind.pop("good") == {200}
    assert by_kind["garbage"] == {415} and by_kind["oversized"] == {413}
    assert all(400 <= code < 500 for codes in by_kind.values() for code in codes), by_kind
    assert r["bad_uploads"] >= len(bench.BAD_KINDS) and r["bad_not_4xx"] == 0
    assert r["server_errors"] == 0 and r["errors"] == 0 and r["busy_503"] == 0


def test_a_server_error_is_counted_as_one(bench, images):
    """The counting itself: a service that answers 500 to every bad upload shows them as server errors."""

    async def predict(request: Request) -> JSONResponse:
        upload = (await request.form()).get("file")
        body = await upload.read() if upload is not None and not isinstance(upload, str) else b""
        if body == images[0]:
            return JSONResponse({"flag": False})
        return JSONResponse({"detail": "boom"}, status_code=500)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = Starlette(routes=[Route("/v1/predict", predict, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        time.sleep(0.02)
    try:
        bad = bench.bad_uploads(images[0], 1 << 16)
        r = bench.run(f"http://127.0.0.1:{port}", images[:1], 1, 1.0, mixed=0.5, bad=bad)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert r["requests"] > 0 and r["bad_uploads"] > 0
    assert r["server_errors"] == r["bad_not_4xx"] == r["errors"] == r["bad_uploads"]
