"""Decode every manifest row once, preprocess it, and write a memory-mapped tensor store.

Why a separate step: decoding and resizing dominate the cost of training a small VAE, and doing them once
makes every later run start in milliseconds. Rows are processed in chunks with one vectorised transform per
chunk (``apply_batch`` gives the same numbers as :func:`vaedx.data.preprocess.apply`, image by image), so a
MedMNIST npz of thousands of images takes a second or two. The store is built in a hidden sibling folder and
moved into place at the end: an interrupted run never leaves a half-written store that opens.

With volume steps in the config (``normalize_scope='volume'``, skull stripping, ``target_spacing``), rows
are grouped by their ``volume`` column and each volume is built once, prepared as a whole by
:func:`vaedx.data.volume_prep.prepare_volume` and written slice by slice, one volume in memory at a time.
A NIfTI is read as a volume, a DICOM series from its folder or zip, and slices stored as 2-D files (the LGG
PNGs) are stacked from their rows; a row without a volume is a volume of one image.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import ValidationError

from vaedx.atomic import atomic_write_text
from vaedx.data.index import IndexOptions, known_label_names
from vaedx.data.manifest import STANDARD_COLUMNS, Manifest, OnError, read_manifest
from vaedx.data.preprocess import PreprocessConfig, apply, foreground, resize, select_channels
from vaedx.data.sources import index_source
from vaedx.data.splits import DEFAULT_FRACTIONS, assign_splits
from vaedx.data.store import StoreWriter, TensorStore
from vaedx.errors import ConfigError, InputError, VaedxError
from vaedx.io import Volume, detect_format, read_any, read_dicom_series, read_mask, read_npz

# Rows are transformed together in chunks of about this many float32 values (32 MB), at most MAX_CHUNK_ROWS
# rows: big enough for vectorisation to pay, small enough that a 512x512 RGB set does not need gigabytes.
CHUNK_VALUES = 1 << 23
MAX_CHUNK_ROWS = 1024
STORE_FILES = ("images.npy", "masks.npy", "labels.npy", "records.json", "store.json", "preprocess.yaml")


# ------------------------------------------------------------------------------------------ configuration
def prepare_config(
    config_file: str | Path | None = None, *, preset: str | None = None, **overrides: Any
) -> PreprocessConfig:
    """A preset's values (:mod:`vaedx.data.presets`), under a YAML file (fields at top level or under
    ``preprocess:``; a store.json works too), under the typed overrides."""
    from vaedx.data.presets import prepare_preset

    data: dict[str, Any] = prepare_preset(preset)
    where = str(config_file) if config_file else "options"
    if config_file:
        p = Path(config_file)
        if not p.is_file():
            raise ConfigError(f"{p}: preprocessing config not found")
        try:
            loaded = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: expected a mapping of preprocessing fields")
        data.update(loaded.get("preprocess", loaded))
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return PreprocessConfig.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"]) or "config"
        raise ConfigError(f"{where}: {loc}: {err['msg']}") from None


# ---------------------------------------------------------------------------------------- vectorised
def apply_batch(
    x: np.ndarray, cfg: PreprocessConfig, masks: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """(N, C, H, W) images and optional (N, H, W) masks -> what ``apply`` gives for each, in one pass."""
    x = x.astype(np.float32, copy=False)
    x = select_channels(x.swapaxes(0, 1), cfg).swapaxes(
        0, 1
    )  # channel axis first, as select_channels expects
    x = _normalize_batch(x, cfg)
    if cfg.foreground_mask:
        x = x * np.stack([foreground(im, cfg) for im in x])[:, None]
    n, c, h, w = x.shape
    x = resize(x.reshape(n * c, h, w), cfg)
    x = np.ascontiguousarray(x.reshape(n, c, *x.shape[-2:]), dtype=np.float32)
    if masks is not None:
        m = (np.asarray(masks) > 0).astype(np.float32)
        masks = (resize(m, cfg, is_mask=True) > 0.5).astype(np.uint8)
    return x, masks


def _normalize_batch(x: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """Per-image statistics, as :func:`vaedx.data.preprocess.normalize_intensity` computes them."""
    if cfg.normalize == "none":
        return x
    flat = x.reshape(len(x), -1)
    if cfg.normalize == "zscore":
        mean, sd = flat.mean(axis=1), flat.std(axis=1)
        return (x - mean[:, None, None, None]) / np.where(sd > 0, sd, 1.0)[:, None, None, None]
    # float32 statistics, so results match the per-image code bit for bit in almost every case
    if cfg.normalize == "fixed":
        lo = np.full(len(x), cfg.fixed_range[0], dtype=np.float32)
        hi = np.full(len(x), cfg.fixed_range[1], dtype=np.float32)
    elif cfg.normalize == "minmax":
        lo, hi = flat.min(axis=1), flat.max(axis=1)
    else:
        lo, hi = np.percentile(flat, cfg.clip_percentiles, axis=1).astype(np.float32)
    span = hi - lo
    out = (x - lo[:, None, None, None]) / np.where(span > 0, span, 1.0)[:, None, None, None]
    out = np.clip(out, 0.0, 1.0).astype(np.float32)
    out[span <= 0] = 0.0
    return out


# --------------------------------------------------------------------------------------------- output
@contextmanager
def staged_store(out: str | Path) -> Iterator[Path]:
    """Yield a hidden folder to build in; on success its files replace any previous store in ``out``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder")
    # images.npy without store.json is a store whose swap below a kill cut short: replaced like any other
    half_swapped = (out / "images.npy").is_file()
    if out.is_dir() and any(out.iterdir()) and not half_swapped and not (out / "store.json").is_file():
        raise ConfigError(
            f"{out}: folder exists, is not empty and is not a vaedx store; choose another --out"
        )
    tmp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    out.mkdir(parents=True, exist_ok=True)
    # store.json marks a complete store, so it goes first and comes back last: a kill during the swap
    # leaves a folder that TensorStore.open refuses, never old metadata over new arrays
    (out / "store.json").unlink(missing_ok=True)
    for name in STORE_FILES:  # other files beside an old store (models, reports) are left alone
        (out / name).unlink(missing_ok=True)
    for f in sorted(tmp.iterdir(), key=lambda f: f.name == "store.json"):
        f.replace(out / f.name)
    tmp.rmdir()


def _finish(
    writer: StoreWriter | None,
    names: Sequence[str],
    cfg: PreprocessConfig,
    skipped: list[dict[str, str]],
    source: Path,
    extra: dict[str, Any],
) -> None:
    if writer is None or writer.count == 0:
        first = f", e.g. {skipped[0]['path']}: {skipped[0]['reason']}" if skipped else ""
        raise InputError(f"no image could be read ({len(skipped)} skipped{first})", source)
    writer.finish(names, cfg, skipped=skipped, source=str(source.resolve()), extra=extra)
    atomic_write_text(
        writer.out / "preprocess.yaml", yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
    )


# -------------------------------------------------------------------------------------------- sources
def prepare(
    source: str | Path,
    out: str | Path,
    cfg: PreprocessConfig,
    *,
    on_error: OnError = "fail",
    read_options: dict[str, Any] | None = None,
    label_names: Sequence[str] | None = None,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> TensorStore:
    """Prepare a store from a manifest CSV, straight from a MedMNIST npz, or from a folder, a NIfTI, a DICOM
    file or a DICOM series zip (indexed first with the default rules).

    ``progress(done, total)`` is called with the images written so far after every chunk, so a caller's
    progress bar follows the decoding rather than guessing."""
    source = Path(source)
    if source.is_file() and source.suffix.lower() != ".csv" and detect_format(source) == "npz":
        with staged_store(out) as tmp:
            _prepare_npz(source, tmp, cfg, label_names, progress)
        return TensorStore.open(out)
    if source.is_dir() or source.suffix.lower() in (".nii", ".gz", ".zip", ".dcm"):
        manifest = index_source(source, IndexOptions(on_error=on_error))  # convenience: default rules
    else:
        manifest = read_manifest(source, on_error=on_error)
    assigned = 0
    if any(not r.get("split") for r in manifest.rows):
        assigned = sum(assign_splits(manifest, fractions, seed).values())
    with staged_store(out) as tmp:
        _prepare_manifest(manifest, tmp, cfg, on_error, read_options or {}, label_names, assigned, progress)
    return TensorStore.open(out)


def _prepare_npz(
    path: Path,
    out: Path,
    cfg: PreprocessConfig,
    label_names: Sequence[str] | None,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    data = read_npz(path)
    all_labels = np.concatenate([lab for _, lab in data.splits.values()])
    names = list(label_names or known_label_names(path) or [])
    names = names or [str(v) for v in range(int(all_labels.max()) + 1)]
    if all_labels.min() < 0 or all_labels.max() >= len(names):
        raise InputError(f"npz label codes {sorted(set(all_labels.tolist()))} do not fit names {names}", path)
    writer: StoreWriter | None = None
    total = sum(len(lab) for _, lab in data.splits.values())
    for split, (images, labels) in data.splits.items():
        chw = images[:, None] if images.ndim == 3 else np.moveaxis(images, -1, 1)
        rows = max(1, min(MAX_CHUNK_ROWS, CHUNK_VALUES // max(1, _values_per_image(chw.shape[1:], cfg))))
        for start in range(0, len(images), rows):
            stop = min(start + rows, len(images))
            x, _ = apply_batch(chw[start:stop], cfg)
            if writer is None:
                writer = StoreWriter(out, total, x.shape[1:], with_masks=False)
            refs = [f"{split}/{i}" for i in range(start, stop)]
            writer.add_batch(
                x,
                labels=labels[start:stop],
                records={
                    "path": [f"{path.name}#{r}" for r in refs],
                    "split": [split] * len(refs),
                    "patient_id": refs,
                },
            )
            if progress is not None:
                progress(writer.count, total)
    _finish(writer, names, cfg, [], path, {"read_options": {}})


def is_series(file: Path) -> bool:
    """A DICOM series row's path is its folder or zip."""
    return file.is_dir() or file.suffix.lower() == ".zip"


class RowDecoder:
    """Decodes manifest rows; keeps the last npz and volume in memory because their rows come in runs."""

    def __init__(self, manifest: Manifest, read_options: dict[str, Any]):
        self.m = manifest
        self.opts = read_options
        self._npz: dict[Path, Any] = {}
        self._multi: dict[tuple[Path, str], list[Any]] = {}
        self._series: dict[Path, Volume] = {}

    def series(self, file: Path) -> Volume:
        """The DICOM series in ``file`` (folder or zip) in model orientation; the last one is kept.

        A ``window`` preset or (centre, width) maps the values to [0, 1] with the same DICOM linear VOI
        function as the 2-D reader, so a series and its slices read one by one look alike.
        """
        from vaedx.io.dicom import _parse_window, _voi

        window = _parse_window(self.opts.get("window"))
        if window == "auto":
            raise ConfigError(
                "--window auto reads each file's own window, which may change from slice to slice of a "
                "DICOM series; give a preset (brain, lung...) or centre,width"
            )
        if file not in self._series:
            vol = read_dicom_series(file).reoriented("LPS")
            if window is not None:
                vol.data = _voi(vol.data, *window, "LINEAR").astype(np.float32)
            self._series = {file: vol}
        return self._series[file]

    def meta(self, row: dict[str, str]) -> dict[str, Any]:
        """The reader's facts about a row's image (spacing...); empty for npz and series rows."""
        ref = self.m.resolve(row["path"])
        if ref.split is not None or is_series(ref.file):
            return {}
        return dict(self._pick(ref.file, row, self.opts).meta)

    def image(self, row: dict[str, str]) -> np.ndarray:
        ref = self.m.resolve(row["path"])
        if ref.split is None and is_series(ref.file):
            data = self.series(ref.file).data
            k = _slice_of(row, len(data), ref.file)
            return np.ascontiguousarray(data[k][None], dtype=np.float32)
        if ref.split is not None:
            if ref.file not in self._npz:
                self._npz = {ref.file: read_npz(ref.file)}
            splits = self._npz[ref.file].splits
            if ref.split not in splits or ref.index >= len(splits[ref.split][0]):  # type: ignore[operator]
                raise InputError(f"npz has no image {ref.split}/{ref.index}", ref.file)
            arr = splits[ref.split][0][ref.index]
            return (
                arr[None].astype(np.float32) if arr.ndim == 2 else np.moveaxis(arr, -1, 0).astype(np.float32)
            )
        return self._pick(ref.file, row, self.opts).array

    def mask(self, row: dict[str, str], hw: tuple[int, int]) -> np.ndarray | None:
        if not row.get("mask"):
            return None
        file = self.m.resolve(row["mask"]).file
        if (row.get("slice_index") or row.get("frame")) and detect_format(file) in ("nifti", "dicom"):
            mask = (self._pick(file, row, {}).array[0] > 0).astype(np.uint8)
        else:
            mask = read_mask(file)
        if mask.shape != hw:
            image = self.m.resolve(row["path"]).file
            raise InputError(
                f"mask is {mask.shape[0]}x{mask.shape[1]} but its image {image} is {hw[0]}x{hw[1]}", file
            )
        return mask

    def _pick(self, file: Path, row: dict[str, str], opts: dict[str, Any]) -> Any:
        """The row's image in ``file``: its only image, or the slice/frame the row names."""
        axis = row.get("axis", "")
        key = (file, axis)
        images = self._multi.get(key)
        if images is None:
            images = read_any(file, **opts, **({"axis": int(axis)} if axis else {}))
            if len(images) > 1:  # keep the image volume and its mask volume, drop older ones
                self._multi = {**dict(list(self._multi.items())[-1:]), key: images}
        if len(images) == 1 and not row.get("frame"):
            return images[0]  # a 2-D file; its slice_index places it in a stack of files
        if row.get("slice_index"):
            want, meta_key = int(row["slice_index"]), "slice_index"
        elif row.get("frame"):
            want, meta_key = int(row["frame"]), "frame_index"
        else:
            raise InputError(
                f"file holds {len(images)} images; the manifest row needs a slice_index or frame", file
            )
        for im in images:
            if im.meta.get(meta_key) == want:
                return im
        raise InputError(f"no {meta_key.replace('_', ' ')} {want} in this file", file)


def _slice_of(row: dict[str, str], n: int, file: Path) -> int:
    """The row's ``slice_index`` into a volume of ``n`` slices."""
    text = row.get("slice_index", "")
    if not text.lstrip("-").isdigit():
        raise InputError("a row of a volume needs a slice_index", file)
    k = int(text)
    if not 0 <= k < n:
        raise InputError(f"slice_index {k} is outside the volume's {n} slices", file)
    return k


def _prepare_manifest(
    m: Manifest,
    out: Path,
    cfg: PreprocessConfig,
    on_error: OnError,
    read_options: dict[str, Any],
    label_names: Sequence[str] | None,
    assigned: int,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    names = m.label_names(label_names)
    codes = m.label_codes(names, explicit=bool(label_names))
    extras = [c for c in m.columns if c not in STANDARD_COLUMNS or c == "mask"]
    decoder = RowDecoder(m, read_options)
    with_masks = any(r.get("mask") for r in m.rows)
    skipped = list(m.skipped)
    writer: StoreWriter | None = None
    extra: dict[str, Any] = {"read_options": read_options, "splits_assigned": assigned}
    cfg = default_size(m, decoder, cfg, extra)
    if cfg.volume_steps:
        batches = _prepared_volumes(m, decoder, cfg, on_error, skipped, extra)
    else:
        batches = _transformed_chunks(m, decoder, cfg, on_error, skipped)
    for idx, images, masks, has_mask in batches:
        if writer is None:
            writer = StoreWriter(out, len(m.rows), images.shape[1:], with_masks=with_masks)
        elif tuple(images.shape[1:]) != tuple(writer.images.shape[1:]):
            _check_shapes([images[0]], [m.resolve(m.rows[idx[0]]["path"]).file], writer.images.shape[1:])
        records: dict[str, list[Any]] = {
            k: [m.rows[i].get(k, "") for i in idx] for k in ("path", "split", "patient_id")
        }
        records.update({k: [m.rows[i].get(k, "") for i in idx] for k in extras})
        records["has_mask"] = has_mask
        writer.add_batch(images, labels=[codes[i] for i in idx], masks=masks, records=records)
        if progress is not None:
            progress(writer.count, len(m.rows))
    _finish(writer, names, cfg, skipped, m.source or m.root, extra)


Batch = tuple[list[int], np.ndarray, np.ndarray | None, list[bool]]
# Images larger than this default to it when no size is given, never enlarging: the usual size of slice
# models of brain MRI and the middle of MedMNIST+'s 28 to 224 px. A VAE at 256 px costs 4x the time per
# epoch of one at 128 px, and at 512 px (the Cheng set's size) 16x, which on a CPU turns the default
# 20-epoch run into hours for no measured gain.
DEFAULT_SIZE = 128
VOLUME_SIZE = DEFAULT_SIZE  # the name the volume route has used


def _is_volume_row(m: Manifest, row: dict[str, str]) -> bool:
    """A slice of a 3-D volume: a row with a volume id, of a DICOM series, or a slice of a NIfTI file."""
    if row.get("volume"):
        return True
    ref = m.resolve(row["path"])
    if ref.split is not None:
        return False
    return is_series(ref.file) or (bool(row.get("slice_index")) and detect_format(ref.file) == "nifti")


def default_size(
    m: Manifest, decoder: RowDecoder, cfg: PreprocessConfig, extra: dict[str, Any]
) -> PreprocessConfig:
    """``cfg`` with size DEFAULT_SIZE when no size (nor target spacing, which sets the geometry) is given
    and the first image (a 2-D image or a slice of a volume) is larger than that; the choice goes into
    ``extra`` (the store's metadata) as ``size_default``. Anything else keeps its source size."""
    if cfg.size is not None or cfg.target_spacing is not None or not m.rows:
        return cfg
    try:
        h, w = decoder.image(m.rows[0]).shape[-2:]
    except (InputError, OSError):
        return cfg  # the normal route reports the unreadable row as it would have
    if max(h, w) <= DEFAULT_SIZE:
        return cfg
    what = "slices of volumes" if _is_volume_row(m, m.rows[0]) else "images"
    extra["size_default"] = {
        "size": DEFAULT_SIZE, "source": [int(h), int(w)], "what": what,
        "why": f"{what} larger than {DEFAULT_SIZE} px default to {DEFAULT_SIZE} px when --size is not given",
    }  # fmt: skip
    return cfg.model_copy(update={"size": (DEFAULT_SIZE, DEFAULT_SIZE)})


def _transformed_chunks(
    m: Manifest, decoder: RowDecoder, cfg: PreprocessConfig, on_error: OnError, skipped: list[dict[str, str]]
) -> Iterator[Batch]:
    """(rows, images, masks, has_mask) per chunk, each image preprocessed on its own (the 2-D route)."""
    expected: tuple[int, ...] | None = None
    for batch in _decoded_chunks(m, decoder, cfg, on_error, skipped):
        files = [m.resolve(m.rows[i]["path"]).file for i, _, _ in batch]
        images, masks = _transform(batch, cfg, files, expected)
        expected = expected or tuple(images.shape[1:])
        yield [i for i, _, _ in batch], images, masks, [mk is not None for _, _, mk in batch]


# -------------------------------------------------------------------------------------- volume route
def _prepared_volumes(
    m: Manifest,
    decoder: RowDecoder,
    cfg: PreprocessConfig,
    on_error: OnError,
    skipped: list[dict[str, str]],
    extra: dict[str, Any],
) -> Iterator[Batch]:
    """One batch per volume, prepared as a whole; ``extra`` gains each volume's geometry and the notes.

    A volume that cannot be read is one problem for all its rows (skipped together); a config the data
    cannot satisfy (a multi-channel model for a one-channel volume) fails whatever ``on_error`` says.
    """
    notes: dict[str, None] = {}
    geometry: dict[str, dict[str, Any]] = {}
    groups = _volume_groups(m)
    flat = sum(key[0] == "image" for key in groups)
    if flat and cfg.brain_extraction != "none":
        # a skull stripper given one 2-D picture answers with a mask, but not one anybody can trust
        raise ConfigError(
            f"{m.source or m.root}: skull stripping ({cfg.brain_extraction}) needs volumes, and {flat} of "
            f"{len(m.rows)} rows are 2-D images (no NIfTI, DICOM series or volume column): prepare them "
            "with --brain-extraction none"
        )
    if flat:
        notes["rows without a volume column: each image is normalised as a volume of its own"] = None
    for key, idx in groups.items():
        try:
            order, images, masks, vol, prepared = _prepare_group(m, decoder, cfg, idx)
        except ConfigError:
            raise
        except (VaedxError, OSError) as e:
            if on_error == "fail":
                raise e if isinstance(e, VaedxError) else InputError(f"cannot read ({e})", key[-1]) from e
            reason = getattr(e, "problem", str(e))
            skipped.extend({"path": m.rows[i]["path"], "reason": reason} for i in idx)
            continue
        notes.update(dict.fromkeys(str(v) for v in prepared.notes.values()))
        if key[0] == "volume":
            geometry[key[1]] = {
                "slices": int(vol.shape[0]),
                "rows": len(order),
                "spacing": [float(v) for v in vol.spacing],
                "spacing_assumed": bool(vol.meta.get("spacing_assumed", False)),
                "orientation": vol.orientation,
            }
        yield order, images, masks, [bool(m.rows[i].get("mask")) for i in order]
    extra["volumes"] = geometry
    extra["notes"] = list(notes)


def _volume_groups(m: Manifest) -> dict[tuple[Any, ...], list[int]]:
    """Row indices per volume, in order of first appearance; a row without a volume is its own group."""
    from vaedx.data.manifest import volume_source

    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, row in enumerate(m.rows):
        key = ("volume", row["volume"], volume_source(m, row)) if row.get("volume") else ("image", i)
        groups.setdefault(key, []).append(i)
    return groups


def _prepare_group(
    m: Manifest, decoder: RowDecoder, cfg: PreprocessConfig, idx: list[int]
) -> tuple[list[int], np.ndarray, np.ndarray | None, Volume, Any]:
    """(rows in store order, their slices, their masks, the model-orientation volume, the PreparedVolume)."""
    from vaedx.data.volume_prep import prepare_volume

    rows = [m.rows[i] for i in idx]
    file = m.resolve(rows[0]["path"]).file
    if rows[0].get("volume") and is_series(file):
        vol = decoder.series(file)
    elif rows[0].get("volume") and file.name.lower().endswith((".nii", ".nii.gz")):
        vol = _nifti_volume(file, rows)
    else:
        return _prepare_stack(m, decoder, cfg, idx)
    ks = [_slice_of(r, vol.shape[0], file) for r in rows]
    truth = _mask_volume(decoder, rows, ks, vol.shape)
    prepared = prepare_volume(vol, cfg, truth)
    masks = None if prepared.masks is None else prepared.masks[ks]
    return idx, prepared.slices[ks], masks, vol, prepared


def _nifti_volume(file: Path, rows: list[dict[str, str]]) -> Volume:
    """The NIfTI in model orientation; its rows must be axial slices, the planes volume steps give."""
    from vaedx.io import read_nifti_volume

    if any(r.get("axis", "2") not in ("", "2") for r in rows):
        raise ConfigError(
            f"{file.name}: volume preparation (volume normalisation, skull stripping, target spacing) gives "
            "axial slices; index the volume with --axis 2"
        )
    return read_nifti_volume(file).reoriented("LPS")


def _mask_volume(
    decoder: RowDecoder, rows: list[dict[str, str]], ks: list[int], shape: tuple[int, int, int]
) -> np.ndarray | None:
    """Ground truth laid out like the volume: each row's mask plane at its slice, zero elsewhere."""
    if not any(r.get("mask") for r in rows):
        return None
    truth = np.zeros(shape, np.uint8)
    for r, k in zip(rows, ks, strict=True):
        plane = decoder.mask(r, shape[1:])
        if plane is not None:
            truth[k] = plane
    return truth


def _prepare_stack(
    m: Manifest, decoder: RowDecoder, cfg: PreprocessConfig, idx: list[int]
) -> tuple[list[int], np.ndarray, np.ndarray | None, Volume, Any]:
    """Slices stored as 2-D files (or one 2-D image) stacked in slice order and prepared as one volume.

    Several channels (the LGG PNGs without ``channels``) are prepared channel by channel, each with its
    own volume statistics.
    """
    from vaedx.data.volume_prep import prepare_volume

    order = sorted(idx, key=lambda i: int(m.rows[i].get("slice_index") or 0))
    rows = [m.rows[i] for i in order]
    if cfg.context_slices:
        _check_neighbours(rows, m.resolve(rows[0]["path"]).file)
    planes = [select_channels(decoder.image(r), cfg) for r in rows]
    for r, plane in zip(rows, planes, strict=True):
        if plane.shape != planes[0].shape:
            h, w = planes[0].shape[1:]
            raise InputError(
                f"slice is {plane.shape[1]}x{plane.shape[2]} but the volume's first slice {h}x{w}",
                m.resolve(r["path"]).file,
            )
    stack = np.stack(planes, axis=1)  # (C, Z, H, W)
    masks = [decoder.mask(r, stack.shape[2:]) for r in rows]
    truth = None
    if any(mk is not None for mk in masks):
        truth = np.stack([np.zeros(stack.shape[2:], np.uint8) if mk is None else mk for mk in masks])
    spacing = decoder.meta(rows[0]).get("spacing")
    meta = {
        "format": "slice-stack",
        "source": rows[0].get("volume") or m.resolve(rows[0]["path"]).file.name,
        "spacing_assumed": spacing is None,
    }
    sy, sx = spacing or (1.0, 1.0)
    if len(stack) > 1 and cfg.context_slices:
        raise ConfigError(
            f"context slices stack neighbours of one channel but the images have {len(stack)}: choose one "
            "with --channels (e.g. 1 for the LGG FLAIR)"
        )
    if len(stack) > 1 and cfg.brain_extraction != "none":
        raise ConfigError(
            f"skull stripping ({cfg.brain_extraction}) needs one channel: choose it with --channels "
            "(e.g. 1 for the LGG FLAIR)"
        )
    channel_cfg = cfg.model_copy(update={"channels": None, "grey": False})  # channels chosen above
    done = []
    vol = None
    for channel in stack:
        vol = Volume(channel, np.diag([sx, sy, 1.0, 1.0]), (1.0, float(sy), float(sx)), meta=dict(meta))
        done.append(prepare_volume(vol, channel_cfg, truth))
    slices = np.concatenate([d.slices for d in done], axis=1)
    assert vol is not None  # a stack has at least one channel
    return order, slices, done[0].masks, vol, done[0]


def _check_neighbours(rows: list[dict[str, str]], file: Path) -> None:
    """Rows sorted by slice, of one volume: with context slices each row's neighbours must be rows too."""
    if not rows[0].get("volume"):
        raise InputError("an image without a volume has no neighbouring slices for --context-slices", file)
    ks = [int(r.get("slice_index") or 0) for r in rows]
    gaps = [a for a, b in zip(ks, ks[1:], strict=False) if b != a + 1]
    if gaps:
        raise InputError(
            f"volume {rows[0]['volume']} lacks the slice after {gaps[0]}, so neighbouring slices are "
            "unknown; "
            "keep every slice of a volume in the manifest (choose what to train on with the label filter)",
            file,
        )


def _decoded_chunks(
    m: Manifest, decoder: RowDecoder, cfg: PreprocessConfig, on_error: OnError, skipped: list[dict[str, str]]
) -> Iterator[list[tuple[int, np.ndarray, np.ndarray | None]]]:
    """Decoded (row, image, mask) in chunks of about CHUNK_VALUES values, so RAM stays bounded."""
    batch: list[tuple[int, np.ndarray, np.ndarray | None]] = []
    values = 0
    for i, row in enumerate(m.rows):
        try:
            img = decoder.image(row)
            batch.append((i, img, decoder.mask(row, img.shape[-2:])))
            values += _values_per_image(img.shape, cfg)
        except (VaedxError, OSError) as e:
            if on_error == "fail":
                raise (
                    e if isinstance(e, VaedxError) else InputError(f"cannot read ({e})", row["path"])
                ) from e
            skipped.append({"path": row["path"], "reason": getattr(e, "problem", str(e))})
        if batch and (values >= CHUNK_VALUES or len(batch) >= MAX_CHUNK_ROWS):
            yield batch
            batch, values = [], 0
    if batch:
        yield batch


def _values_per_image(shape: Sequence[int], cfg: PreprocessConfig) -> int:
    """Float32 values one image occupies before or after resizing, whichever is larger."""
    c, h, w = shape
    th, tw = cfg.size or (h, w)
    return c * max(h * w, th * tw)


def _transform(
    batch: list[tuple[int, np.ndarray, np.ndarray | None]],
    cfg: PreprocessConfig,
    files: list[Path],
    expected: tuple[int, ...] | None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """One vectorised call when the chunk shares a shape, image by image otherwise; sizes must agree."""
    has_mask = any(mk is not None for _, _, mk in batch)
    blank = [np.zeros(img.shape[-2:], np.uint8) if mk is None else mk for _, img, mk in batch]
    if len({img.shape for _, img, _ in batch}) == 1:
        images, masks = apply_batch(np.stack([img for _, img, _ in batch]), cfg, np.stack(blank))
        _check_shapes([images[0]], files[:1], expected)
    else:
        done = [apply(img, cfg, mk) for (_, img, _), mk in zip(batch, blank, strict=True)]
        _check_shapes([d[0] for d in done], files, expected)
        images, masks = np.stack([d[0] for d in done]), np.stack([d[1] for d in done])  # type: ignore[misc]
    return images, masks if has_mask else None


def _check_shapes(images: list[np.ndarray], files: list[Path], expected: tuple[int, ...] | None) -> None:
    want = expected or images[0].shape
    for out, file in zip(images, files, strict=True):
        if out.shape != want:
            raise InputError(
                f"image becomes {out.shape[1]}x{out.shape[2]}x{out.shape[0]} (HxWxC) but earlier ones "
                f"{want[1]}x{want[2]}x{want[0]}; give --size (and --channels) for one common shape",
                file,
            )
