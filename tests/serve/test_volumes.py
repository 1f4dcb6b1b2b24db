"""Volumes through the service: real LGG, nibabel and pydicom volumes in; scores, overlays and NIfTIs out.

The scores, lesion figures and NIfTI files must equal what ``vaedx detect`` gives for the same file and
model; uploads that are broken, too large or that unpack too far get a one-line 4xx, never a 5xx.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import zipfile
from pathlib import Path

import httpx
import nibabel as nib
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image as PILImage

from browser_helpers import LoopbackServer
from serve_helpers import ANATOMICAL, CT5N, CT5N_PHI, MAX_UPLOAD, zip_folder
from vaedx.serve.inference import ServeError
from vaedx.serve.volumes import VolumeLimits, store_volume


@pytest.fixture(scope="module")
def vclient(lgg_run: Path):
    from vaedx.serve.app import create_app

    with TestClient(create_app(lgg_run, max_upload_bytes=MAX_UPLOAD)) as c:
        yield c


def upload(client: TestClient, data: bytes, name: str = "scan.nii.gz"):
    return client.post("/v1/volumes", files={"file": (name, data, "application/octet-stream")})


def png(data: bytes) -> np.ndarray:
    return np.asarray(PILImage.open(io.BytesIO(data)))


def nifti_of(data: bytes) -> nib.Nifti1Image:
    return nib.Nifti1Image.from_bytes(gzip.decompress(data))


def test_lgg_volume_scores_lesion_and_niftis_equal_vaedx_detect(vclient, lgg_run, lgg_nifti_path, tmp_path):
    from vaedx.anomaly.detect import detect

    data = lgg_nifti_path.read_bytes()
    assert len(data) > MAX_UPLOAD  # larger than the 2-D route takes: the volume route has its own limit
    r = upload(vclient, data, name=lgg_nifti_path.name)
    assert r.status_code == 200, r.text
    body = r.json()
    case = lgg_nifti_path.name[: -len(".nii.gz")]
    assert case not in r.text and case not in body["volume_id"] and len(body["volume_id"]) >= 20
    n = nib.load(lgg_nifti_path).shape[2]
    assert body["kind"] == "nifti" and body["n_slices"] == len(body["slices"]) == n
    assert body["spacing_assumed"] is False and body["spacing_mm"] == pytest.approx([3.0, 0.9, 0.9])
    assert body["threshold"] is not None and body["pixel_threshold"] is not None

    out = detect(lgg_run, tmp_path / "det", inputs=[lgg_nifti_path], scorers=["residual"], quiet=True,
                 max_overlays=0)  # fmt: skip
    with open(out / "scores.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    want_scores = [float(r["residual"]) for r in rows]
    assert [s["score"] for s in body["slices"]] == pytest.approx(want_scores, rel=1e-6)
    assert [s["flag"] for s in body["slices"]] == [bool(int(r["residual_flag"])) for r in rows]
    want = json.loads((out / "volumes.json").read_text())["volumes"][0]["scorers"]["residual"]
    assert body["lesion_volume_mm3"] == pytest.approx(want["lesion_volume_mm3"])
    assert body["n_components"] == want["n_components"] and body["components"] == want["components"]

    source = nib.load(lgg_nifti_path)
    for url, name in ((body["map_url"], "residual_map"), (body["mask_url"], "residual_mask")):
        got = vclient.get(url)
        assert got.status_code == 200 and got.headers["content-type"] == "application/gzip"
        assert case not in got.headers["content-disposition"]
        img, ref = nifti_of(got.content), nib.load(out / "volumes" / case / f"{name}.nii.gz")
        assert img.shape == source.shape and np.array_equal(img.affine, source.affine)
        assert np.allclose(img.get_fdata(), ref.get_fdata())

    # overlays: one per slice on the volume's own grid, in the order of the scores
    h, w = body["display_size"]
    mid = body["n_slices"] // 2
    a, b = (vclient.get(body["overlay_url"].format(index=k)) for k in (mid, mid + 3))
    assert a.status_code == 200 and a.headers["content-type"] == "image/png"
    assert png(a.content).shape == (h, w, 3) and not np.array_equal(png(a.content), png(b.content))
    bad = vclient.get(body["overlay_url"].format(index=body["n_slices"]))
    assert bad.status_code == 404 and "out of range" in bad.json()["detail"]
    assert vclient.get(f"/v1/volumes/{body['volume_id']}").json() == body


def test_nibabel_anatomical_volume(vclient):
    r = upload(vclient, ANATOMICAL.read_bytes(), name="anatomical.nii")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["n_slices"] == 25 and body["orientation"] == "LAS" and body["display_size"] == [41, 33]
    img = nifti_of(vclient.get(body["map_url"]).content)
    assert img.shape == (33, 41, 25) and np.array_equal(img.affine, nib.load(ANATOMICAL).affine)


def test_zipped_dicom_series_leaks_no_patient_identifier(vclient, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    raw = zip_folder(CT5N, tmp_path / "Doe^Peter.zip", zipfile.ZIP_STORED).read_bytes()
    assert CT5N_PHI[0].encode() in raw  # the series really carries them
    r = upload(vclient, raw, name="Doe^Peter_98890234.zip")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["kind"] == "dicom-series" and body["n_slices"] == 5 and body["spacing_assumed"] is False
    entry = vclient.app.state.volumes.cache.get(body["volume_id"])
    files = [f.read_bytes() for f in entry.folder.rglob("*") if f.is_file()]
    files += [gzip.decompress(vclient.get(body[u]).content) for u in ("map_url", "mask_url")]
    files.append(vclient.get(body["overlay_url"].format(index=2)).content)
    for text in (r.text, caplog.text):
        assert not any(s in text for s in CT5N_PHI)
    for blob in files:
        assert not any(s.encode() in blob for s in CT5N_PHI)


def _four_d() -> bytes:
    img = nib.load(ANATOMICAL)
    data = np.stack([img.get_fdata()] * 2, axis=-1).astype(np.float32)
    return gzip.compress(nib.Nifti1Image(data, img.affine).to_bytes())


def _zip_without_dicom() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("README.txt", "no images here")
        z.writestr("notes/report.txt", "still none")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("make", "status", "words"),
    [
        (lambda: gzip.compress(ANATOMICAL.read_bytes())[:2000], 422, "truncated or corrupt"),
        (lambda: ANATOMICAL.read_bytes()[:300], 415, "unsupported file type"),
        (_zip_without_dicom, 422, "no DICOM images"),
        (lambda: b"PK\x03\x04 not really a zip", 422, "unreadable zip"),
        (_four_d, 422, "4-D NIfTI"),
        (lambda: b"just text", 415, "unsupported file type"),
        (lambda: b"", 422, "empty"),
    ],
    ids=["truncated-nifti", "cut-header", "zip-no-dicom", "broken-zip", "4d-nifti", "text", "empty"],
)
def test_bad_volume_uploads_get_one_line_4xx(vclient, make, status, words):
    root = vclient.app.state.volumes.cache.root
    before = set(root.iterdir())
    r = upload(vclient, make(), name="Doe^Jane.nii.gz")
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert words in detail and "\n" not in detail and "/tmp" not in detail and "Doe" not in detail
    assert set(root.iterdir()) == before  # nothing of a refused upload is kept


def test_model_taking_three_channels_refuses_volumes(tmp_path):
    import vaedx
    from vaedx.data.preprocess import PreprocessConfig
    from vaedx.data.store import StoreWriter
    from vaedx.serve.app import create_app

    rng = np.random.default_rng(0)
    writer = StoreWriter(tmp_path / "store", 16, (3, 16, 16), with_masks=False)
    for i in range(16):
        writer.add(rng.random((3, 16, 16), dtype=np.float32), label=0, split="val" if i % 4 == 3 else "train",
                   path=f"img{i}.png", patient_id=f"p{i}")  # fmt: skip
    writer.finish(["normal"], PreprocessConfig(size=(16, 16)))
    vaedx.train(tmp_path / "store", tmp_path / "run", epochs=1, widths=[8, 16], latent_dim=4, batch_size=16,
                num_threads=1)  # fmt: skip
    with TestClient(create_app(tmp_path / "run")) as c:
        r = upload(c, ANATOMICAL.read_bytes(), name="anatomical.nii")
    assert r.status_code == 422 and "3" in r.json()["detail"] and "channel" in r.json()["detail"]


def test_zip_and_nifti_bombs_are_refused_before_unpacking(tmp_path):
    limits = VolumeLimits(max_upload_bytes=1 << 20, max_uncompressed_bytes=4 << 20, max_members=10)
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a.dcm", b"\0" * (64 << 20))  # 64 MiB of zeros in about 64 kB
    many = io.BytesIO()
    with zipfile.ZipFile(many, "w") as z:
        for i in range(11):
            z.writestr(f"{i}.dcm", b"x")
    header = nib.Nifti1Header()
    header.set_data_shape((1024, 1024, 512))
    header.set_data_dtype(np.int16)
    claims = gzip.compress(header.binaryblock + b"\0" * 4 + b"\0" * 1000)  # 1 GiB of voxels claimed
    cases = [(bomb, "decompression limit"), (many, "holds 11 files"), (io.BytesIO(claims), "voxels take")]
    for i, (data, words) in enumerate(cases):
        assert len(data.getvalue()) < limits.max_upload_bytes
        folder = tmp_path / str(i)
        folder.mkdir()
        with pytest.raises(ServeError) as e:
            store_volume(io.BytesIO(data.getvalue()), folder, "v", limits)
        assert e.value.status == 413 and words in e.value.message, e.value.message
        assert not list(folder.iterdir()) or all(f.name != "v.zip" for f in folder.iterdir())


def test_a_zip_is_repacked_uncompressed_with_neutral_member_names(tmp_path):
    raw = zip_folder(CT5N, tmp_path / "series.zip")
    (tmp_path / "up").mkdir()
    path = store_volume(io.BytesIO(raw.read_bytes()), tmp_path / "up", "v", VolumeLimits())
    with zipfile.ZipFile(path) as z:
        infos = z.infolist()
    assert path.name == "v.zip" and [i.filename for i in infos] == [f"{n:06d}" for n in range(5)]
    assert all(i.compress_type == zipfile.ZIP_STORED for i in infos)


def test_oversized_volume_gets_a_readable_413_over_loopback(run_dir):
    """A real uvicorn and httpx: the 413 JSON arrives instead of a reset connection, with and without a
    Content-Length, while the 2-D route keeps its own (smaller) limit."""
    from vaedx.serve.app import create_app

    app = create_app(run_dir, max_upload_bytes=MAX_UPLOAD, max_volume_upload_bytes=1 << 20)
    big = b"\x1f\x8b" + b"0" * (3 << 20)

    def chunked():
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="v.nii.gz"\r\n\r\n'
        for _ in range(3):
            yield b"0" * (1 << 20)

    with LoopbackServer(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        sized = client.post("/v1/volumes", files={"file": ("v.nii.gz", big)})
        streamed = client.post("/v1/volumes", content=chunked(),
                               headers={"content-type": "multipart/form-data; boundary=b"})  # fmt: skip
        image = client.post("/v1/predict", files={"file": ("x.png", b"\x89PNG\r\n\x1a\n" + b"0" * (1 << 19))})
    for r in (sized, streamed, image):
        assert r.status_code == 413 and r.headers["content-type"] == "application/json"
        assert "larger than the limit" in r.json()["detail"]
    assert "1.0 MiB" in sized.json()["detail"]


def test_results_are_deleted_with_the_volume_and_at_shutdown(run_dir):
    from vaedx.serve.app import create_app

    app = create_app(run_dir, max_upload_bytes=MAX_UPLOAD)
    root = app.state.volumes.cache.root
    with TestClient(app) as c:
        first = upload(c, ANATOMICAL.read_bytes()).json()
        second = upload(c, ANATOMICAL.read_bytes()).json()
        assert first["volume_id"] != second["volume_id"] and len(list(root.iterdir())) == 2
        assert c.delete(f"/v1/volumes/{first['volume_id']}").status_code == 204
        gone = c.get(first["map_url"])
        assert gone.status_code == 404 and "upload it again" in gone.json()["detail"]
        assert first["mask_url"] is None  # this model has no calibrated pixel threshold: no mask file
        assert c.get(f"/v1/volumes/{second['volume_id']}/mask.nii.gz").status_code == 404
        assert len(list(root.iterdir())) == 1
    assert not root.exists()


def test_single_channel_dicom_stands_for_the_flair_channel(vclient):
    """The LGG model takes channel 1 (FLAIR) of 3-channel PNGs; a one-channel MR DICOM is scored, and the
    response says how it was taken."""
    import pydicom

    mr = Path(pydicom.__file__).parent / "data" / "test_files" / "MR_small.dcm"
    r = vclient.post("/v1/predict", files={"file": ("mr.dcm", mr.read_bytes(), "application/dicom")})
    assert r.status_code == 200, r.text
    image = r.json()["image"]
    assert image["original_channels"] == 1 and image["channels"] == 1
    assert image["channel_mapping"] == (
        "single-channel images taken as channel 1, the one channel the model was trained on"
    )
