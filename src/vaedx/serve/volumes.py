"""An uploaded volume (a NIfTI, or a zip of one DICOM series) scored slice by slice, like ``vaedx detect``.

Why through :mod:`vaedx.anomaly.volumes`: reading, per-volume preprocessing, scoring, and the way back to
the input's own space are the ones ``vaedx detect`` uses, so the service's slice scores, lesion volume and
NIfTI files equal the command's for the same file and model.

What the service adds is safety around the upload:

* a NIfTI's header is checked before its voxels are read: a 4-D file is refused (the service cannot choose
  a time point), and so is one whose voxels would take more memory than the decompression limit - a
  small .nii.gz can claim a huge array;
* a zip is unpacked member by member in chunks, counting the bytes actually produced (headers can lie),
  into a new uncompressed archive whose members are renamed to numbers. Members over the count or byte
  limit end it with 413, and the DICOM reader then decodes an archive that cannot expand any further and
  whose names (client file names can carry patient names) never reach a message;
* the volume's id is a random token: the file name and every DICOM tag stay out of ids, files and answers.

Overlays are drawn on the volume's own grid in model orientation (axial planes, row 0 anterior, column 0
the patient's right), from arrays saved beside the NIfTIs: the grey image, the heatmap quantised to 8 bits
and the lesion mask that ``<scorer>_mask.nii.gz`` holds.
"""

from __future__ import annotations

import logging
import shutil
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from vaedx.anomaly.volumes import VOLUMES_DIR, read_volumes, write_volume_outputs
from vaedx.errors import VaedxError
from vaedx.io import detect_format
from vaedx.serve import render
from vaedx.serve.inference import CAVEAT, CHUNK, Predictor, ServeError, save_upload
from vaedx.serve.volume_cache import CachedVolume, TooLargeForCache, VolumeCache

log = logging.getLogger("vaedx.serve")
MIB = 1 << 20
DEFAULT_MAX_VOLUME_UPLOAD = 512 * MIB
DEFAULT_MAX_UNCOMPRESSED = 2048 * MIB
DEFAULT_MAX_MEMBERS = 4096
SUPPORTED = "a NIfTI volume (.nii, .nii.gz) or a .zip of one DICOM series"
ARRAYS = ("display", "heat", "lesion")


@dataclass(frozen=True)
class VolumeLimits:
    """Upload size, and what a NIfTI's voxels or a zip's members may expand to."""

    max_upload_bytes: int = DEFAULT_MAX_VOLUME_UPLOAD
    max_uncompressed_bytes: int = DEFAULT_MAX_UNCOMPRESSED
    max_members: int = DEFAULT_MAX_MEMBERS


def _mib(n: int) -> str:
    return f"{n / MIB:.1f} MiB"


# --------------------------------------------------------------------------------------------- upload
def store_volume(stream: BinaryIO, folder: Path, vid: str, limits: VolumeLimits) -> Path:
    """Save the upload as ``folder/<vid>.nii[.gz]`` or ``<vid>.zip`` after the checks above."""
    raw = save_upload(stream, folder, limits.max_upload_bytes)
    with open(raw, "rb") as f:
        head = f.read(4)
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        target = folder / f"{vid}.zip"
        _repack_zip(raw, target, limits)
        raw.unlink()
        return target
    try:
        fmt = detect_format(raw)
    except VaedxError:
        fmt = None
    if fmt != "nifti":
        raise ServeError(415, f"unsupported file type: upload {SUPPORTED} (checked by content)")
    target = raw.rename(folder / (f"{vid}.nii.gz" if head[:2] == b"\x1f\x8b" else f"{vid}.nii"))
    _check_nifti(target, limits)
    return target


def _check_nifti(path: Path, limits: VolumeLimits) -> None:
    import nibabel as nib

    try:
        img = nib.load(path)  # the header only: voxels are read later, once they are known to fit
        shape = tuple(int(d) for d in img.shape)
        itemsize = int(img.get_data_dtype().itemsize)
    except Exception:
        raise ServeError(422, "unreadable NIfTI: the header is truncated or corrupt") from None
    if len(shape) > 3 and int(np.prod(shape[3:])) > 1:
        n = int(np.prod(shape[3:]))
        raise ServeError(422, f"4-D NIfTI of shape {list(shape)} holds {n} volumes: upload one 3-D volume")
    if len(shape) < 3 or sum(d > 1 for d in shape[:3]) < 3:
        raise ServeError(
            422, f"NIfTI of shape {list(shape)} is not a 3-D volume (a 2-D image goes to /v1/predict)"
        )
    need = int(np.prod(shape[:3])) * max(itemsize, 4)  # read as float32
    if need > limits.max_uncompressed_bytes:
        raise ServeError(
            413, f"the NIfTI's voxels take {_mib(need)}, more than the decompression limit of "
            f"{_mib(limits.max_uncompressed_bytes)}",
        )  # fmt: skip


def _repack_zip(src: Path, target: Path, limits: VolumeLimits) -> None:
    """Copy every member of ``src`` into an uncompressed zip, counting the bytes that really come out."""
    too_big = ServeError(
        413, f"the zip unpacks to more than the decompression limit of {_mib(limits.max_uncompressed_bytes)}"
    )
    try:
        with zipfile.ZipFile(src) as archive, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as out:
            members = sorted((i for i in archive.infolist() if not i.is_dir()), key=lambda i: i.filename)
            if len(members) > limits.max_members:
                raise ServeError(413, f"the zip holds {len(members)} files, more than the limit of "
                                      f"{limits.max_members}")  # fmt: skip
            if not members:
                raise ServeError(422, "the zip is empty: put the DICOM files of one series in it")
            if sum(i.file_size for i in members) > limits.max_uncompressed_bytes:
                raise too_big
            if any(i.flag_bits & 0x1 for i in members):
                raise ServeError(422, "the zip is encrypted: upload it without a password")
            total = 0
            for n, info in enumerate(members):
                with archive.open(info) as f, out.open(f"{n:06d}", "w", force_zip64=True) as dst:
                    while chunk := f.read(CHUNK):
                        total += len(chunk)
                        if total > limits.max_uncompressed_bytes:
                            raise too_big
                        dst.write(chunk)
    except ServeError:
        target.unlink(missing_ok=True)
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, EOFError,
            OSError, zlib.error, ValueError) as e:  # fmt: skip
        target.unlink(missing_ok=True)
        why = type(e).__name__
        raise ServeError(422, f"unreadable zip archive ({why}): it is truncated or corrupt") from None


# --------------------------------------------------------------------------------------------- scoring
class VolumeService:
    """Scores uploaded volumes with the predictor's model; keeps their results in a :class:`VolumeCache`."""

    def __init__(self, predictor: Predictor, cache: VolumeCache, limits: VolumeLimits = VolumeLimits()):
        self.predictor, self.cache, self.limits = predictor, cache, limits

    def upload(self, stream: BinaryIO) -> dict[str, Any]:
        vid, folder = self.cache.new_folder()
        try:
            path = store_volume(stream, folder, vid, self.limits)
            entry = self._score(vid, folder, path)
            path.unlink(missing_ok=True)  # the upload itself is not kept
            self.cache.add(entry)
        except TooLargeForCache as e:
            raise ServeError(413, str(e)) from None
        except VaedxError as e:  # anything the library says about the data is the client's problem
            shutil.rmtree(folder, ignore_errors=True)
            raise ServeError(422, e.problem) from None
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return entry.result

    def _score(self, vid: str, folder: Path, path: Path) -> CachedVolume:
        p, cal = self.predictor, self.predictor.calibration
        t0 = time.perf_counter()
        images, _, done = read_volumes([path], p.preprocess, p.loaded.image_shape)
        t1 = time.perf_counter()
        maps, scores = p.score_images(images)
        t2 = time.perf_counter()
        summary = write_volume_outputs(folder, done, {cal.scorer: maps}, {cal.scorer: cal.pixel_threshold})[0]
        pictures = _save_pictures(folder, done[0].prepared, maps, cal.pixel_threshold)
        t3 = time.perf_counter()
        result = self._result(vid, summary, scores, images.shape[2:], pictures)
        result["timings_s"] = {"read": round(t1 - t0, 3), "score": round(t2 - t1, 3),
                               "write": round(t3 - t2, 3)}  # fmt: skip
        arrays = {k: np.load(folder / f"{k}.npy", mmap_mode="r") for k in ARRAYS}
        log.info("volume kind=%s slices=%d size=%s max_score=%.6g s=%.2f", summary["kind"], len(scores),
                 "x".join(map(str, summary["shape"])), float(scores.max()), t3 - t0)  # fmt: skip
        return CachedVolume(vid, folder, result, arrays)

    def _result(self, vid: str, summary: dict[str, Any], scores: np.ndarray, model_hw: Any,
                pictures: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
        cal = self.predictor.calibration
        thr = cal.image_threshold
        lesion = summary["scorers"][cal.scorer]
        base = f"/v1/volumes/{vid}"
        slices = [{"index": k, "score": float(s), "flag": None if thr is None else bool(s > thr)}
                  for k, s in enumerate(scores)]  # fmt: skip
        return {
            "volume_id": vid,
            "kind": summary["kind"],
            "n_slices": len(slices),
            "shape": summary["shape"],
            "spacing_mm": summary["spacing_mm"],
            "spacing_assumed": summary["spacing_assumed"],
            "orientation": summary["orientation"],
            "slice_order": pictures["slice_order"],
            "model_size": [int(d) for d in model_hw],
            "display_size": pictures["display_size"],
            "scorer": cal.scorer,
            "threshold": thr,
            "pixel_threshold": cal.pixel_threshold,
            "slices": slices,
            "n_flagged": None if thr is None else sum(bool(s["flag"]) for s in slices),
            "lesion_volume_mm3": lesion["lesion_volume_mm3"],
            "n_components": lesion["n_components"],
            "components": lesion["components"],
            "heatmap_scale": pictures["heatmap_scale"],
            "contour_source": pictures["contour_source"],
            "brain_extraction": summary["brain_extraction"],
            "notes": summary["notes"],
            "overlay_url": base + "/slices/{index}.png",
            "map_url": base + "/map.nii.gz",
            "mask_url": base + "/mask.nii.gz" if lesion["mask"] else None,
            "expires_after_idle_s": self.cache.ttl_s,
            "caveat": CAVEAT,
        }

    # -- reading results back ---------------------------------------------------------------------------
    def entry(self, vid: str) -> CachedVolume:
        entry = self.cache.get(vid)
        if entry is None:
            raise ServeError(404, "no such volume: unknown id, or its results expired (upload it again)")
        return entry

    def overlay_png(self, vid: str, index: int) -> bytes:
        entry = self.entry(vid)
        n = entry.result["n_slices"]
        if not 0 <= index < n:
            raise ServeError(404, f"slice {index} out of range: the volume has {n} slices (0 to {n - 1})")
        a = entry.arrays
        heat = render.heatmap_rgba(np.asarray(a["heat"][index], np.float32) / 255.0, 1.0)
        edge = render.contour_layer(np.asarray(a["lesion"][index]).astype(bool))
        shown = render.overlay(render.overlay(np.asarray(a["display"][index]), heat), edge, opacity=1.0)
        return render.to_png_bytes(shown)

    def nifti(self, vid: str, which: str) -> tuple[BinaryIO, str]:
        """An open ``<scorer>_map.nii.gz`` / ``_mask.nii.gz`` and the file name to download it as."""
        entry = self.entry(vid)
        scorer = entry.result["scorer"]
        if which == "mask" and entry.result["mask_url"] is None:
            raise ServeError(404, "no lesion mask: the model has no calibrated pixel threshold")
        name = f"{scorer}_{which}.nii.gz"
        f = self.cache.open(vid, f"{VOLUMES_DIR}/{vid}/{name}")
        if f is None:
            raise ServeError(404, "no such volume: unknown id, or its results expired (upload it again)")
        return f, f"vaedx_{name}"


def _save_pictures(folder: Path, prepared: Any, maps: np.ndarray, threshold: float | None) -> dict[str, Any]:
    """display.npy (uint8 grey), heat.npy (uint8 map / vmax) and lesion.npy (uint8) on the source grid.

    The lesion is the one write_volume_outputs puts in the mask NIfTI (same map, same threshold, same brain);
    without a calibrated pixel threshold the outline falls back to the volume's 99th percentile, as the
    single-image answer does, and no mask file exists.
    """
    src = prepared.source
    on_source = prepared.to_source(maps)
    if prepared.brain is not None:
        on_source = np.where(prepared.brain, on_source, 0.0).astype(np.float32)
    if threshold is not None:
        level, source = threshold, "calibrated pixel threshold"
        lesion = on_source > threshold
        if prepared.brain is not None:
            lesion &= prepared.brain
    else:
        level = float(np.percentile(on_source, 99))
        source = "99th percentile of this volume's map (not calibrated)"
        lesion = on_source > level
    vmax = 2 * threshold if threshold is not None and threshold > 0 else float(on_source.max())
    heat = np.clip(on_source / vmax, 0, 1) if vmax > 0 else np.zeros_like(on_source)
    lo, hi = np.percentile(src.data, (0.5, 99.5))
    grey = np.clip((src.data - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(src.data)
    np.save(folder / "display.npy", (grey * 255).round().astype(np.uint8))
    np.save(folder / "heat.npy", (heat * 255).round().astype(np.uint8))
    np.save(folder / "lesion.npy", lesion.astype(np.uint8))
    order = (
        "axial planes from inferior to superior; row 0 anterior, column 0 the patient's right"
        if src.orientation is not None else "slices as stored (the volume has no orientation)"
    )  # fmt: skip
    return {
        "display_size": [int(d) for d in src.shape[1:]],
        "heatmap_scale": {"min": 0.0, "max": float(vmax)},
        "contour_source": f"{source} ({level:.6g})",
        "slice_order": order,
    }
