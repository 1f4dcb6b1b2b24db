"""Volumes through detection: slices in, anomaly-map and lesion-mask NIfTIs in the input's own space out.

Why NIfTI in the input's space: users look at results in ITK-SNAP, 3D Slicer or FSLeyes over the scan they
gave. Each map is put back through every preprocessing step (padding, resizing, resampling, reorientation;
see :class:`vaedx.data.volume_prep.PreparedVolume`) so it has the input's shape, affine and voxel order and
overlays it voxel for voxel. The lesion mask is the map thresholded at the calibrated pixel threshold on the
input grid (thresholding after upsampling gives smooth outlines rather than blocky ones), restricted to the
brain when the model's preprocessing strips the skull. Per volume, ``volumes.json`` gives the lesion volume
in mm³ and its 3-D connected components.

A 2.5-D model (``context_slices`` K > 0) is fed each slice with its K neighbours on each side, built from
the volume exactly as ``data prepare`` built them, and its map is placed on the centre slice, as are the
masks. The map is the scorer's mean over the 2K+1 channels, the reduction every scorer already applies:
it keeps residual, SSIM, gradient and restoration maps (and their calibrated thresholds) on one footing,
and averaging the planes lowers reconstruction noise; the price is that a lesion in slice z+1 only adds
1/(2K+1) of its residual to slice z's map, a blur of one slice along z.
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from vaedx.anomaly.scoring import Inputs, file_inputs, is_image_file
from vaedx.atomic import atomic_write, atomic_write_json
from vaedx.data.preprocess import PreprocessConfig
from vaedx.data.volume_prep import PreparedVolume, prepare_volume
from vaedx.io.volume_source import VolumeKind, read_volume, volume_id, volume_kind
from vaedx.metrics.volume import components, lesion_volume_mm3
from vaedx.runs.inputs import ModelInputs

VOLUMES_DIR = "volumes"
VOLUMES_FILE = "volumes.json"
MAX_COMPONENTS = 50  # components listed per volume and scorer in volumes.json (all are counted)


@dataclass
class ScoredVolume:
    """One input volume: its id, the prepared slices, and where its rows start in the detect inputs."""

    id: str
    kind: str
    prepared: PreparedVolume
    start: int
    path: Path | None = None

    @property
    def stop(self) -> int:
        return self.start + self.prepared.slices.shape[0]


def split_volume_inputs(paths: Sequence[str | Path]) -> tuple[list[Path], list[Path]]:
    """(volume inputs, other inputs), in the order given."""
    volumes, others = [], []
    for p in map(Path, paths):
        (volumes if volume_kind(p) is not None else others).append(p)
    return volumes, others


def read_volumes(
    paths: Sequence[Path],
    preprocess: PreprocessConfig,
    image_shape: Sequence[int],
    start: int = 0,
    kinds: Sequence[VolumeKind] | None = None,
) -> tuple[np.ndarray, list[dict[str, Any]], list[ScoredVolume]]:
    """Model-input slices (N, C, H, W) of every volume, one record per slice, and the volumes themselves.

    Slices are checked against the model like any other input, so a volume that does not fit is refused
    with one line naming it. ``kinds``: the :func:`volume_kind` of each path when the caller has it.
    """
    reader = ModelInputs(preprocess, tuple(image_shape))  # type: ignore[arg-type]
    channel = preprocess.channels[0] if preprocess.channels else None
    images, rows, done = [], [], []
    seen: dict[str, int] = {}
    for i, p in enumerate(paths):
        kind = kinds[i] if kinds is not None else volume_kind(p)
        vol = read_volume(p, channel=channel, kind=kind)
        prepared = prepare_volume(vol, preprocess)
        why = reader.mismatch(prepared.slices[0])
        if why is not None:
            from vaedx.errors import ModelMismatchError

            raise ModelMismatchError(why + " (check the model's preprocessing)", p)
        name = volume_id(p)
        if name in seen:  # two inputs of the same name: keep outputs apart
            seen[name] += 1
            name = f"{name}-{seen[name]}"
        seen.setdefault(name, 0)
        offset = start + sum(len(x) for x in images)
        done.append(ScoredVolume(name, str(kind), prepared, offset, Path(p)))
        images.append(prepared.slices)
        rows += [
            {"index": offset + k, "path": f"{name}#{k}", "split": "", "label": "", "patient_id": "",
             "volume": name, "slice_index": k}
            for k in range(prepared.slices.shape[0])
        ]  # fmt: skip
    return np.concatenate(images).astype(np.float32), rows, done


def write_volume_outputs(
    out: Path,
    volumes: Sequence[ScoredVolume],
    maps: dict[str, np.ndarray],
    pixel_thresholds: dict[str, float | None],
    dicom_seg: bool = False,
) -> list[dict[str, Any]]:
    """``volumes/<id>/<scorer>_map.nii.gz`` and ``<scorer>_mask.nii.gz`` per volume; returns volumes.json.

    ``dicom_seg``: DICOM series inputs also get ``<scorer>_seg.dcm``, a DICOM SEG of the lesion mask that
    references the source images. It is the one output that carries the source's patient and study
    modules (the SEG standard requires them); every other output stays free of identifiers.
    """
    summary = []
    for vol in volumes:
        folder = out / VOLUMES_DIR / vol.id
        folder.mkdir(parents=True, exist_ok=True)
        src = vol.prepared.source
        entry: dict[str, Any] = {
            "volume": vol.id,
            "kind": vol.kind,
            "shape": list(src.to_original(np.zeros(src.shape, np.uint8)).shape),
            "spacing_mm": [float(s) for s in src.spacing],
            "spacing_assumed": bool(src.meta.get("spacing_assumed", False)),
            "orientation": src.meta.get("original_orientation") or src.orientation,
            "brain_extraction": vol.prepared.cfg.brain_extraction,
            "notes": vol.prepared.notes,
            "scorers": {},
        }
        for name, stack in maps.items():
            entry["scorers"][name] = _write_one(folder, vol, name, stack[vol.start : vol.stop],
                                                pixel_thresholds.get(name), dicom_seg)  # fmt: skip
        summary.append(entry)
    atomic_write_json(out / VOLUMES_FILE, {"volumes": summary})
    return summary


def _write_one(
    folder: Path, vol: ScoredVolume, name: str, maps: np.ndarray, threshold: float | None, dicom_seg: bool
) -> dict[str, Any]:
    prepared, src = vol.prepared, vol.prepared.source
    on_source = prepared.to_source(maps)
    if prepared.brain is not None:
        on_source = np.where(prepared.brain, on_source, 0.0).astype(np.float32)
    rel = Path(VOLUMES_DIR) / vol.id
    _save(src.to_original(on_source.astype(np.float32)), folder / f"{name}_map.nii.gz")
    result: dict[str, Any] = {"map": str(rel / f"{name}_map.nii.gz"), "threshold": threshold}
    if threshold is None:
        result.update(mask=None, lesion_volume_mm3=None, n_components=None, components=[])
        return result
    lesion = on_source > threshold
    if prepared.brain is not None:
        lesion &= prepared.brain
    mask_img = src.to_original(lesion.astype(np.uint8))
    _save(mask_img, folder / f"{name}_mask.nii.gz")
    if dicom_seg:
        result["dicom_seg"] = _seg(vol, mask_img, folder / f"{name}_seg.dcm", name, rel)
    found = components(lesion, src.spacing)
    for c in found:
        k, j, i = c["centroid_voxel"]
        c["centroid_mm"] = [round(float(v), 2) for v in (src.affine @ np.array([i, j, k, 1.0]))[:3]]
    result.update(
        mask=str(rel / f"{name}_mask.nii.gz"),
        lesion_volume_mm3=float(lesion_volume_mm3(lesion, src.spacing)),
        n_components=len(found),
        components=found[:MAX_COMPONENTS],
    )
    return result


def _seg(vol: ScoredVolume, mask_img: nib.Nifti1Image, path: Path, name: str, rel: Path) -> str | None:
    """The DICOM SEG of a DICOM series input (None for other inputs, which have no source to reference)."""
    if vol.kind != "dicom-series" or vol.path is None:
        return None
    from vaedx.io.dicom_seg import write_dicom_seg

    # to_original gives the reader's own voxel order as (x, y, z); the SEG writer takes (z, y, x)
    mask = np.asarray(mask_img.dataobj).transpose(2, 1, 0)
    write_dicom_seg(mask, vol.path, path, label=f"anomaly ({name})")
    return str(rel / path.name)


def _save(img: nib.Nifti1Image, path: Path) -> None:
    """Written through a temporary file, so a viewer never opens half a NIfTI."""

    atomic_write(path, lambda tmp: tmp.write_bytes(gzip.compress(img.to_bytes(), compresslevel=6)))


def _entries(paths: Sequence[str | Path]) -> list[tuple[Path, VolumeKind | None]]:
    """The paths with their :func:`volume_kind`, a folder that is not itself a volume opened one level when
    it holds volumes (a folder of NIfTI files, of DICOM series folders or of case folders); otherwise kept
    whole, so the 2-D reader expands it as before. Each path is sniffed once: for a DICOM folder that
    means reading every header."""
    out: list[tuple[Path, VolumeKind | None]] = []
    for p in map(Path, paths):
        kind = volume_kind(p)
        if p.is_dir() and kind is None:
            children = [(c, volume_kind(c)) for c in sorted(p.iterdir()) if not c.name.startswith(".")]
            if any(k is not None for _, k in children):
                out += [(c, k) for c, k in children if k is not None or c.is_dir() or is_image_file(c)]
                continue
        out.append((p, kind))
    return out


def detect_inputs(
    paths: Sequence[str | Path], preprocess: PreprocessConfig, image_shape: Sequence[int]
) -> tuple[Inputs, list[ScoredVolume]]:
    """``--input`` paths as detect inputs in the order given: 2-D files (and folders of them) as
    :func:`file_inputs` reads them, volumes as their slices, with the volumes to write back."""
    parts: list[Inputs] = []
    volumes: list[ScoredVolume] = []
    start = 0
    for p, kind in _entries(paths):
        if kind is None:
            part = file_inputs([p], preprocess, image_shape)
            for r in part.rows:
                r["index"] += start
        else:
            images, rows, done = read_volumes([p], preprocess, image_shape, start, kinds=[kind])
            notes = [ModelInputs(preprocess).mapping_note(1)] if preprocess.channels else []
            part = Inputs(images, rows, None, "files", notes=[n for n in notes if n])
            volumes += done
        parts.append(part)
        start += len(part.rows)
    if not parts:
        from vaedx.errors import InputError

        raise InputError("no images to read")
    if len(parts) == 1:
        return parts[0], volumes
    rows = [r for q in parts for r in q.rows]
    notes = sorted({n for q in parts for n in q.notes})
    return Inputs(np.concatenate([q.images for q in parts]), rows, None, "files", notes=notes), volumes
