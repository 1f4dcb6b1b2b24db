"""Workers and queue: N requests in inference at once, a bounded queue, then 503 with Retry-After.

Deterministic, not timed: the scoring step is replaced by a double that holds requests inside inference
until the test lets them go, so "all workers busy and the queue full" is a state the test builds, not a
race it hopes to win.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from serve_helpers import png_bytes
from vaedx.serve.admission import Gate


def post(client: TestClient, data: bytes, route: str = "/v1/predict"):
    field = "files" if route.endswith("batch") else "file"
    return client.post(route, files={field: ("x.png", data, "application/octet-stream")})


class HeldScoring:
    """``run_scorers`` of the service replaced by one that waits: for ``release``, or for ``parties``
    requests to be inside at the same time (a barrier), then scores for real."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, parties: int | None = None):
        from vaedx.serve import inference

        self.real = inference.run_scorers
        self.entered = threading.Semaphore(0)
        self.release = threading.Event()
        self.barrier = threading.Barrier(parties, timeout=30) if parties else None
        monkeypatch.setattr(inference, "run_scorers", self)

    def __call__(self, *args, **kwargs):
        self.entered.release()
        if self.barrier is not None:
            self.barrier.wait()  # BrokenBarrierError if the requests were serialised
        else:
            assert self.release.wait(30), "the test never released the held request"
        return self.real(*args, **kwargs)


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.01)


def test_gate_admits_workers_plus_queue_and_counts_busy_slots() -> None:
    gate = Gate(workers=2)
    assert gate.queue == 4 and gate.capacity == 6
    assert [gate.try_enter() for _ in range(7)] == [True] * 6 + [False]
    gate.leave()
    assert gate.admitted == 5 and gate.try_enter() and not gate.try_enter()
    with gate.slot():
        assert gate.busy == 1
    assert gate.busy == 0
    with pytest.raises(ValueError):
        Gate(workers=0)
    with pytest.raises(ValueError):
        Gate(workers=1, queue=-1)


def test_full_workers_and_queue_answer_503_with_retry_after_at_once(run_dir: Path, monkeypatch) -> None:
    from vaedx.serve.app import create_app

    held = HeldScoring(monkeypatch)
    app = create_app(run_dir, workers=1, queue=1)
    gate = app.state.gate
    with TestClient(app) as c, ThreadPoolExecutor(2) as pool:
        first = pool.submit(post, c, png_bytes())
        assert held.entered.acquire(timeout=30)  # the one worker is in inference
        second = pool.submit(post, c, png_bytes(seed=1))
        wait_for(lambda: gate.admitted == 2, "the second request to queue")
        assert gate.busy == 1  # it waits for the worker, outside inference
        for route in ("/v1/predict", "/v1/predict/batch", "/v1/volumes"):
            r = post(c, png_bytes(seed=2), route)
            assert r.status_code == 503, (route, r.text)
            assert r.headers["retry-after"] == "1" and r.headers["content-security-policy"]
            assert "server busy" in r.json()["detail"] and "\n" not in r.text
        assert c.get("/healthz").status_code == 200 and c.get("/v1/model").status_code == 200  # not gated
        held.release.set()
        assert first.result(30).status_code == 200 and second.result(30).status_code == 200
        assert gate.admitted == 0 and gate.busy == 0
        assert post(c, png_bytes()).status_code == 200  # room again


def test_refused_and_failed_requests_free_their_place(run_dir: Path) -> None:
    from vaedx.serve.app import create_app

    app = create_app(run_dir, workers=1, queue=0)
    with TestClient(app) as c:
        for _ in range(3):  # a 415 and a 422 leave the gate as they found it
            assert post(c, b"not an image").status_code == 415
            assert post(c, b"").status_code == 422
        assert app.state.gate.admitted == 0 and post(c, png_bytes()).status_code == 200


def test_two_workers_are_in_inference_at_the_same_time(run_dir: Path, monkeypatch) -> None:
    """Both requests must be inside the scorer at once to pass the barrier: no lock serialises them."""
    from vaedx.serve.app import create_app

    held = HeldScoring(monkeypatch, parties=2)
    with TestClient(create_app(run_dir, workers=2)) as c, ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda s: post(c, png_bytes(seed=s)), [0, 1]))
    assert [r.status_code for r in results] == [200, 200]
    assert not held.barrier.broken


def test_concurrent_answers_equal_serial_ones(run_dir: Path) -> None:
    from vaedx.serve.app import create_app

    images = [png_bytes(20 + 4 * s, 24, seed=s) for s in range(8)]
    with TestClient(create_app(run_dir, workers=4)) as c:
        serial = [post(c, im).json() for im in images]
        with ThreadPoolExecutor(8) as pool:
            together = [r.json() for r in pool.map(lambda im: post(c, im), images)]
    for a, b in zip(serial, together, strict=True):
        assert a["score"] == b["score"] and a["overlay_png"] == b["overlay_png"]
        assert a["image"] == b["image"]
    assert len({a["score"] for a in serial}) == len(images)  # distinct images, so a mix-up would show


@pytest.mark.parametrize("scorer", ["grad_elbo", "restoration"])
def test_autograd_scorers_run_concurrently_without_touching_the_model(run_dir: Path, scorer: str) -> None:
    """Gradient and restoration scorers build graphs through the shared model: run together, they must
    give each image its serial score and leave the weights without .grad and the model in eval mode."""
    from vaedx.serve.inference import Predictor

    p = Predictor(run_dir, scorer=scorer)
    rng = np.random.default_rng(0)
    xs = [p.prepare(rng.random((1, 16, 16)).astype(np.float32)) for _ in range(6)]
    try:
        serial = [p.score_images(x[None]) for x in xs]
        with ThreadPoolExecutor(3) as pool:
            together = list(pool.map(lambda x: p.score_images(x[None]), xs))
    finally:
        p.close()
    for (m1, s1), (m2, s2) in zip(serial, together, strict=True):
        np.testing.assert_allclose(s2, s1, rtol=1e-5)
        np.testing.assert_allclose(m2, m1, rtol=1e-4, atol=1e-7)
    model = p.loaded.model
    assert not model.training and all(w.grad is None for w in model.parameters())


def test_busy_answer_is_documented_in_the_openapi(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for route in ("/v1/predict", "/v1/predict/batch", "/v1/volumes"):
        assert "503" in spec["paths"][route]["post"]["responses"], route
    assert json.dumps(spec).count("Retry-After") >= 1
