"""The HTTP API against the real app and a tiny trained model: predictions, errors, limits and PHI."""

from __future__ import annotations

import base64
import io
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image as PILImage

from dicom_builders import PHI_STRINGS
from serve_helpers import MAX_UPLOAD, dicom_bytes, make_store, nifti_bytes, png_bytes
from vaedx.anomaly import build_scorer
from vaedx.anomaly.scoring import PostSpec
from vaedx.data.preprocess import PreprocessConfig, apply
from vaedx.io import read_any
from vaedx.metrics.thresholds import Thresholds
from vaedx.runs.loaded import load_model


def decode_png(b64: str) -> np.ndarray:
    return np.asarray(PILImage.open(io.BytesIO(base64.b64decode(b64))))


def post(client: TestClient, data: bytes, name: str = "x.png", **form: str):
    return client.post("/v1/predict", files={"file": (name, data, "application/octet-stream")}, data=form)


def test_predict_png_matches_the_library_and_returns_pictures(client, run_dir, tmp_path):
    data = png_bytes(40, 30)
    r = post(client, data)
    assert r.status_code == 200, r.text
    body = r.json()
    # same score as scoring the preprocessed image with the library directly
    (tmp_path / "a.png").write_bytes(data)
    loaded = load_model(run_dir)
    x, _ = apply(read_any(tmp_path / "a.png")[0].array, loaded.preprocess)
    expected = build_scorer("residual", loaded.model).score(x[None]).scores[0]
    assert body["scorer"] == "residual" and body["score"] == pytest.approx(expected, rel=1e-5)
    assert body["threshold"] is None and body["flag"] is None and body["diagnosis"] is None
    assert body["image"]["original_size"] == [40, 30] and body["image"]["model_size"] == [16, 16]
    assert decode_png(body["input_png"]).shape == (16, 16)
    assert decode_png(body["reconstruction_png"]).shape == (16, 16)
    assert decode_png(body["heatmap_png"]).shape == (16, 16, 4)  # RGBA layer for the page's slider
    assert decode_png(body["overlay_png"]).shape == (16, 16, 3)
    contour = body["contour"]
    assert "not calibrated" in contour["source"] and contour["n_pixels"] >= 1
    edge = decode_png(contour["png"])
    assert (edge[..., 3] > 0).sum() >= 1 and contour["regions"][0]["area"] >= 1
    assert "not for clinical" in body["caveat"] or "not a medical device" in body["caveat"]


def test_rgb_png_is_folded_to_the_models_single_channel(client):
    r = post(client, png_bytes(20, 20, mode="RGB"))
    assert r.status_code == 200, r.text
    assert r.json()["image"]["channels"] == 1


def test_a_model_that_picks_a_colour_channel_sees_that_channel(tmp_path):
    """LGG FLAIR is channel 1 of RGB PNGs (preprocess channels [1]): the upload must not be folded to grey."""
    import vaedx
    from vaedx.serve import render
    from vaedx.serve.app import create_app

    pre = PreprocessConfig(size=(16, 16), channels=[1])
    store = make_store(tmp_path / "store", n=16, preprocess=pre)
    run = tmp_path / "run"
    vaedx.train(store, run, epochs=1, widths=[8, 16], latent_dim=4, batch_size=16, num_threads=1)
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[..., 0], rgb[4:12, 4:12, 1], rgb[..., 2] = 255, 200, 30  # luma differs from channel 1
    buf = io.BytesIO()
    PILImage.fromarray(rgb).save(buf, format="PNG")
    with TestClient(create_app(run)) as c:
        r = post(c, buf.getvalue())
    assert r.status_code == 200, r.text
    (tmp_path / "a.png").write_bytes(buf.getvalue())
    x, _ = apply(read_any(tmp_path / "a.png")[0].array, pre)
    assert np.array_equal(decode_png(r.json()["input_png"]), render.display_image(x))


def test_dicom_phi_never_reaches_response_or_logs(client, tmp_path, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    data = dicom_bytes(tmp_path)
    assert b"PID-12345" in data  # the file really carries the identifiers
    r = post(client, data, name="Doe^Jane_PID-12345.dcm", window="40,400")
    assert r.status_code == 200, r.text
    assert r.json()["image"]["format"] == "dicom" and r.json()["image"]["modality"] == "CT"
    out, err = capfd.readouterr()
    for text in (r.text, caplog.text, out, err):
        for s in PHI_STRINGS:
            assert s not in text
    assert "predict format=dicom" in caplog.text  # logging did happen
    # nothing written for the upload is left behind
    assert not any(client.app.state.predictor.tmp_root.iterdir())


def test_nifti_slice_index_picks_the_slice(client, tmp_path):
    data, _ = nifti_bytes(tmp_path)
    first = post(client, data, name="v.nii.gz", slice_index="0")
    last = post(client, data, name="v.nii.gz", slice_index="4")
    default = post(client, data, name="v.nii.gz")
    assert first.status_code == last.status_code == default.status_code == 200, first.text
    assert first.json()["image"]["n_slices"] == 5
    assert [r.json()["image"]["slice_index"] for r in (first, last, default)] == [0, 4, 2]
    assert first.json()["input_png"] != last.json()["input_png"]  # the blob moves from slice to slice
    bad = post(client, data, name="v.nii.gz", slice_index="9")
    assert bad.status_code == 422 and "out of range" in bad.json()["detail"]


def test_uncompressed_nifti_without_extension_on_disk(client, tmp_path):
    data, _ = nifti_bytes(tmp_path, gz=False)
    r = post(client, data, name="upload")
    assert r.status_code == 200, r.text
    assert r.json()["image"]["format"] == "nifti"


def test_batch_reports_errors_per_item(client):
    files = [
        ("files", ("a.png", png_bytes(), "image/png")),
        ("files", ("b.png", b"this is text, not a PNG", "image/png")),
        ("files", ("c.png", png_bytes()[:60], "image/png")),
    ]
    r = client.post("/v1/predict/batch", files=files)
    assert r.status_code == 200, r.text
    body = r.json()
    assert [(i["index"], i["ok"], i["status"]) for i in body["items"]] == [
        (0, True, 200),
        (1, False, 415),
        (2, False, 422),
    ]
    assert body["items"][0]["result"]["score"] > 0 and body["n_ok"] == 1 and body["n_failed"] == 2


def test_model_info(client):
    r = client.get("/v1/model")
    assert r.status_code == 200
    info = r.json()
    assert info["kind"] == "vae" and info["label_names"] == ["normal", "pneumonia"]
    assert info["image_shape"] == [1, 16, 16] and info["preprocess"]["size"] == [16, 16]
    assert info["training_data"]["n_train"] > 0 and "store" not in info["training_data"]  # no server paths
    assert info["metrics"]["epochs"] == 1 and info["metrics"]["last"]["val_loss"] > 0
    assert info["calibration"]["image_threshold"] is None
    assert info["diagnosis"]["attached"] is False


def test_healthz_openapi_and_no_cdn_docs(client):
    assert client.get("/healthz").json() == {"status": "ok", "model_kind": "vae"}
    spec = client.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    assert {"/v1/predict", "/v1/predict/batch", "/v1/model", "/healthz"} <= set(spec["paths"])
    props = spec["components"]["schemas"]["Prediction"]["properties"]
    assert {"score", "threshold", "flag", "diagnosis", "heatmap_png", "contour"} <= set(props)
    # every $ref resolves
    for ref in {m for m in json.dumps(spec).split('"') if m.startswith("#/components/schemas/")}:
        assert ref.rsplit("/", 1)[1] in spec["components"]["schemas"]
    assert client.get("/docs").status_code == 404  # Swagger UI would load from a CDN


def test_too_large_by_content_length(client):
    r = post(client, b"\x89PNG\r\n\x1a\n" + b"0" * (MAX_UPLOAD * 2))
    assert r.status_code == 413


def test_too_large_file_within_the_multipart_slack(client):
    r = post(client, b"\x89PNG\r\n\x1a\n" + b"0" * (MAX_UPLOAD + 10))
    assert r.status_code == 413 and "limit" in r.json()["detail"]


def test_too_large_chunked_upload_without_content_length(client):
    boundary = "vaedxboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()

    def body():
        yield head
        for _ in range(40):
            yield b"0" * 16384

    r = client.post(
        "/v1/predict", content=body(), headers={"content-type": f"multipart/form-data; boundary={boundary}"}
    )
    assert r.status_code == 413


@pytest.mark.parametrize(
    ("data", "status", "words"),
    [
        (b"just some text named .png", 415, "unsupported file type"),
        (b"", 422, "empty"),
        (png_bytes()[:60], 422, "unreadable PNG"),
    ],
)
def test_bad_uploads(client, data, status, words):
    r = post(client, data, name="scan.png")
    assert r.status_code == status and words in r.json()["detail"]
    assert "/tmp" not in r.text and "scan.png" not in r.text  # no server path, no client file name


def test_npz_upload_is_refused(client):
    buf = io.BytesIO()
    np.savez(buf, images=np.zeros((2, 8, 8)))
    r = post(client, buf.getvalue(), name="data.npz")
    assert r.status_code == 415 and "npz" in r.json()["detail"]


def test_channel_mismatch_is_a_clear_422(client):
    from vaedx.serve.inference import ServeError

    predictor = client.app.state.predictor
    with pytest.raises(ServeError) as e:
        predictor.prepare(np.zeros((2, 16, 16), np.float32))
    assert e.value.status == 422 and "expects 1-channel" in e.value.message


def _calibrate(run: Path, store: Path, scorer: str, options: dict | None = None, post: str | None = None):
    from vaedx.anomaly.calibration import calibrate_thresholds
    from vaedx.anomaly.scoring import PostSpec
    from vaedx.data.store import TensorStore

    opts = {scorer: options} if options else {}
    spec = PostSpec.parse(post)
    return calibrate_thresholds(load_model(run), TensorStore.open(store), [scorer], options=opts, post=spec)


def test_calibrated_thresholds_give_a_flag_and_a_calibrated_contour(run_dir, tmp_path):
    from vaedx.anomaly.calibration import CalibrationFile, ScorerCalibration
    from vaedx.serve.app import create_app

    run = shutil.copytree(run_dir, tmp_path / "run")
    thr = Thresholds(image_threshold=1e-9, pixel_threshold=1e-9, n_calibration=10)
    CalibrationFile(scorers={"residual": ScorerCalibration(thresholds=thr)}).save(run)
    with TestClient(create_app(run)) as c:
        body = post(c, png_bytes()).json()
        info = c.get("/v1/model").json()
    assert body["threshold"] == 1e-9 and body["flag"] is True
    assert body["contour"]["source"] == "calibrated pixel threshold" and body["contour"]["level"] == 1e-9
    assert info["calibration"]["details"]["n_calibration"] == 10 and info["calibration"]["problem"] is None


def test_thresholds_from_vaedx_calibrate_are_used(run_dir, tmp_path):
    from vaedx.serve.app import create_app

    run = shutil.copytree(run_dir, tmp_path / "run")
    saved = _calibrate(run, run_dir.parent / "store", "residual")
    expected = saved.scorers["residual"].thresholds.image_threshold
    with TestClient(create_app(run)) as c:
        body = post(c, png_bytes()).json()
        info = c.get("/v1/model").json()
    assert body["threshold"] == expected and body["flag"] == (body["score"] > expected)
    assert info["calibration"]["details"]["split"] == "val" and info["calibration"]["problem"] is None


@pytest.mark.parametrize(
    ("scorer", "options", "postprocess"),
    [("residual", None, "foreground,median=3"), ("ssim", {"image_method": "max"}, "gaussian=1")],
)
def test_service_scores_and_flags_exactly_like_vaedx_detect(run_dir, tmp_path, scorer, options, postprocess):
    """Scorer, options, post-processing and threshold all come from thresholds.json, as in `vaedx detect`."""
    import csv

    from vaedx.anomaly.detect import detect
    from vaedx.data.store import TensorStore
    from vaedx.serve.app import create_app

    run = shutil.copytree(run_dir, tmp_path / "run")
    store = TensorStore.open(run_dir.parent / "store")
    _calibrate(run, store.root, scorer, options, postprocess)
    files = []  # two training-like blobs and two noise images
    for i, arr in enumerate([store.images[0, 0], store.images[1, 0], None, None]):
        path = tmp_path / f"img{i}.png"
        path.write_bytes(png_bytes(16, 16, seed=i) if arr is None else _to_png(arr))
        files.append(path)
    out = detect(run, tmp_path / "det", inputs=files, scorers=[scorer], options={scorer: options or {}},
                 postprocess=postprocess, max_overlays=0, quiet=True)  # fmt: skip
    with open(out / "scores.csv", newline="") as f:
        rows = {r["path"]: r for r in csv.DictReader(f)}
    with TestClient(create_app(run, scorer=scorer)) as c:
        info = c.get("/v1/model").json()["calibration"]
        got = [post(c, p.read_bytes()).json() for p in files]
    assert info["postprocess"] == PostSpec.parse(postprocess).as_dict() and info["options"] == (options or {})
    raw = build_scorer(scorer, load_model(run).model).score(
        apply(read_any(files[0])[0].array, load_model(run).preprocess)[0][None]
    ).scores[0]
    for path, body in zip(files, got, strict=True):
        row = rows[path.name]
        assert body["scorer"] == scorer and body["score"] == pytest.approx(float(row[scorer]), rel=1e-6)
        assert body["flag"] is not None and body["flag"] == bool(int(row[f"{scorer}_flag"]))
    assert got[0]["score"] != pytest.approx(raw, rel=1e-6)  # post-processing/options really were applied


def _to_png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    scaled = (img - img.min()) / (np.ptp(img) or 1)
    PILImage.fromarray((scaled * 255).round().astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_scorer_choice_without_thresholds_and_bad_thresholds_files(run_dir, tmp_path):
    from vaedx.errors import ConfigError, InputError
    from vaedx.serve.app import create_app

    run = shutil.copytree(run_dir, tmp_path / "run")
    _calibrate(run, run_dir.parent / "store", "ssim")
    with TestClient(create_app(run)) as c:  # only ssim is calibrated: it is the default
        assert c.get("/v1/model").json()["scorer"] == "ssim"
        assert post(c, png_bytes()).json()["flag"] is not None
    with TestClient(create_app(run, scorer="kl")) as c:  # any scorer; uncalibrated, so no flag
        body, info = post(c, png_bytes()).json(), c.get("/v1/model").json()
    assert body["scorer"] == "kl" and body["flag"] is None and body["threshold"] is None
    assert "no calibrated thresholds for scorer 'kl'" in info["calibration"]["problem"]
    assert "vaedx detect --model RUN --store STORE --save-calibration" in info["calibration"]["problem"]
    assert info["calibration"]["calibrated_scorers"] == ["ssim"]
    with pytest.raises(ConfigError, match="scorer 'nope' does not work"):
        create_app(run, scorer="nope")
    (run / "thresholds.json").write_text("{not json")
    with pytest.raises(InputError, match="unreadable thresholds file"):
        create_app(run)


def test_real_diagnosis_is_attached_and_matches_vaedx_diagnose(run_dir, tmp_path):
    from vaedx.diagnose.fit import fit_diagnosis
    from vaedx.diagnose.predict import diagnose_images
    from vaedx.serve.app import create_app

    store = run_dir.parent / "store"
    diag = fit_diagnosis(run_dir, store, out=tmp_path / "diag", candidates=("logreg",), n_splits=2)
    data = png_bytes()
    with TestClient(create_app(run_dir, diagnosis_dir=tmp_path / "diag")) as c:
        got = post(c, data).json()["diagnosis"]
        assert c.get("/v1/model").json()["diagnosis"]["attached"] is True
    (tmp_path / "a.png").write_bytes(data)
    loaded = load_model(run_dir)
    x, _ = apply(read_any(tmp_path / "a.png")[0].array, loaded.preprocess)
    want = diagnose_images(diag, loaded, x[None], k=0)[0]
    assert got["class"] == want["class"] and got["probability"] == pytest.approx(want["probability"])
    assert set(got["probabilities"]) == {"normal", "pneumonia"} and "neighbours" not in got


def test_diagnosis_for_another_encoder_is_refused_at_start_up(run_dir, tmp_path):
    import vaedx
    from vaedx.diagnose.fit import fit_diagnosis
    from vaedx.errors import ModelMismatchError
    from vaedx.serve.app import create_app

    other = vaedx.train(run_dir.parent / "store", tmp_path / "other", epochs=1, widths=[8, 16], latent_dim=4,
                        batch_size=16, num_threads=1, seed=1)  # fmt: skip
    fit_diagnosis(other, run_dir.parent / "store", out=tmp_path / "diag", candidates=("logreg",), n_splits=2)
    with pytest.raises(ModelMismatchError, match="encoder weights differ"):
        create_app(run_dir, diagnosis_dir=tmp_path / "diag")


def test_diagnosis_on_an_encoder_finetuned_from_the_served_model(run_dir, tmp_path):
    from vaedx.data.preprocess import apply
    from vaedx.diagnose.finetune import finetune_encoder
    from vaedx.diagnose.fit import fit_diagnosis
    from vaedx.diagnose.predict import diagnose_images
    from vaedx.errors import InputError
    from vaedx.io.dispatch import read_any
    from vaedx.runs.loaded import load_model
    from vaedx.serve.app import create_app

    store = run_dir.parent / "store"
    tuned = finetune_encoder(run_dir, store, tmp_path / "tuned", epochs=1, min_steps=3, num_threads=1)
    diag = fit_diagnosis(tuned, store, include=("mu",), out=tmp_path / "diag", candidates=("logreg",),
                         n_splits=2)  # fmt: skip
    data = png_bytes()
    with TestClient(create_app(run_dir, diagnosis_dir=tmp_path / "diag")) as c:
        got = post(c, data).json()["diagnosis"]
    (tmp_path / "a.png").write_bytes(data)
    x, _ = apply(read_any(tmp_path / "a.png")[0].array, load_model(run_dir).preprocess)
    want = diagnose_images(diag, tuned, x[None], k=0)[0]  # features from the fine-tuned encoder
    assert got["class"] == want["class"] and got["probability"] == pytest.approx(want["probability"])
    with pytest.raises(InputError, match="fine-tuned for diagnosis"):
        create_app(tmp_path / "tuned")  # its decoder does not match: not an anomaly model


def test_page_is_offline_accessible_and_carries_the_caveat(client):
    r = client.get("/")
    assert r.status_code == 200 and "default-src 'self'" in r.headers["content-security-policy"]
    html = r.text
    assert "not for clinical use" in html
    assert '<label for="opacity"' in html and 'type="range" id="opacity"' in html
    assert '<button type="button" id="drop-zone"' in html  # focusable, keyboard-operable drop zone
    static = Path(__file__).resolve().parents[2] / "src" / "vaedx" / "serve" / "static"
    for f in static.iterdir():
        text = f.read_text(encoding="utf-8")
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, f.name
        assert client.get(f"/static/{f.name}").status_code == 200


BATCH_LIMIT = MAX_UPLOAD * 32  # MAX_BATCH_FILES images of the single-image limit


def _multipart_head(boundary: str, name: str = "files") -> bytes:
    return (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="x.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()


def test_batch_over_its_limit_by_content_length_is_413_before_reading(client):
    from vaedx.serve.app import MAX_BATCH_FILES

    assert MAX_BATCH_FILES == 32
    big = [("files", (f"{i}.png", b"\x89PNG\r\n\x1a\n" + b"0" * MAX_UPLOAD, "image/png")) for i in range(33)]
    r = client.post("/v1/predict/batch", files=big)
    assert r.status_code == 413 and f"limit of {BATCH_LIMIT} bytes" in r.json()["detail"]
    # a Content-Length alone decides: the body behind it is never read
    headers = {"content-length": str(10**12), "content-type": "multipart/form-data; boundary=b"}
    r = client.post("/v1/predict/batch", content=iter([b"x"]), headers=headers)
    assert r.status_code == 413 and "limit" in r.json()["detail"]
    assert client.app.state.gate.admitted == 0


def test_batch_crossing_its_limit_mid_stream_is_413(client):
    boundary = "vaedxbatch"
    sent = [0]

    def body():
        yield _multipart_head(boundary)
        while sent[0] < BATCH_LIMIT + (1 << 20):  # no Content-Length: only counting can stop it
            sent[0] += 1 << 16
            yield b"0" * (1 << 16)

    headers = {"content-type": f"multipart/form-data; boundary={boundary}"}
    r = client.post("/v1/predict/batch", content=body(), headers=headers)
    assert r.status_code == 413 and f"limit of {BATCH_LIMIT} bytes" in r.json()["detail"]
    assert "\n" not in r.json()["detail"] and client.app.state.gate.admitted == 0


def test_one_file_over_the_image_limit_fails_alone_in_a_batch(client):
    files = [
        ("files", ("a.png", png_bytes(), "image/png")),
        ("files", ("b.png", b"\x89PNG\r\n\x1a\n" + b"0" * (MAX_UPLOAD + 10), "image/png")),
    ]
    body = client.post("/v1/predict/batch", files=files).json()
    assert [(i["ok"], i["status"]) for i in body["items"]] == [(True, 200), (False, 413)]
    assert "limit" in body["items"][1]["error"]


def test_a_seeded_upload_fuzz_round_gets_only_200s_and_one_line_4xx(run_dir):
    """benchmarks/fuzz.py --serve: mutated real files posted to /v1/predict, the batch and /v1/volumes."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    cmd = [sys.executable, str(root / "benchmarks" / "fuzz.py"), "--serve", "--model", str(run_dir),
           "--cases", "48", "--seed", "0", "--time-limit", "20", "--json"]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["cases"] == 48 and out["distinct_failures"] == 0, out["failures"]
    routes = {k.rsplit(" ", 1)[0] for k in out["statuses"]}
    codes = {int(k.rsplit(" ", 1)[1]) for k in out["statuses"]}
    assert routes == {"/v1/predict", "/v1/predict/batch", "/v1/volumes"}
    assert 200 in codes and codes & {415, 422}  # both kinds of answer happened: the round tested something


@pytest.mark.cuda
def test_one_request_on_cuda_matches_the_cpu(cuda_run, pneumonia_npz):
    """`vaedx serve --device cuda`: the model sits on the GPU and a real chest X-ray gets the CPU's answer."""
    from vaedx.serve.app import create_app

    buf = io.BytesIO()
    PILImage.fromarray(np.load(pneumonia_npz)["test_images"][0]).save(buf, format="PNG")
    answers = {}
    for device in ("cpu", "cuda"):
        with TestClient(create_app(cuda_run.run, device=device)) as c:
            model = c.app.state.predictor.loaded.model
            assert next(model.parameters()).device.type == device
            r = post(c, buf.getvalue())
        assert r.status_code == 200, r.text
        answers[device] = r.json()
    cpu, gpu = answers["cpu"], answers["cuda"]
    assert gpu["scorer"] == cpu["scorer"]
    assert gpu["score"] == pytest.approx(cpu["score"], rel=0.05)  # bfloat16/float16 autocast on the GPU
    assert gpu["image"]["model_size"] == cpu["image"]["model_size"]
    assert decode_png(gpu["input_png"]).shape == decode_png(cpu["input_png"]).shape
