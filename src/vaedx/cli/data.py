"""`vaedx data index | split | prepare | inspect`: thin typer wrappers over the data modules.

Options only parse text and call the library, so everything the CLI does is also one function call away
for notebooks and tests. User errors surface as VaedxError and ``vaedx.cli.main`` prints them as one line.
"""

from __future__ import annotations

import json
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from vaedx.cli.options import (
    JSON_HELP,
    OVERWRITE_HELP,
    QUIET_HELP,
    deprecated,
    dump_settings,
    pick,
    print_json,
    refuse_existing,
    required,
)
from vaedx.errors import ConfigError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


class OnErrorChoice(StrEnum):
    fail = "fail"
    skip = "skip"


class ScopeChoice(StrEnum):
    image = "image"
    volume = "volume"


def brain_methods() -> tuple[str, ...]:
    """Skull-stripping method names; only 'none' where vaedx.data.brain is not installed."""
    try:
        from vaedx.data.brain import METHODS
    except ImportError:
        return ("none",)
    return tuple(METHODS)


def _brain_method(text: str | None) -> str | None:
    if text is None:
        return None
    methods = brain_methods()
    if text not in methods:
        raise ConfigError(f"--brain-extraction {text!r} is not a method; use one of {', '.join(methods)}")
    return text


class NormalizeChoice(StrEnum):
    percentile = "percentile"
    minmax = "minmax"
    zscore = "zscore"
    fixed = "fixed"
    none = "none"


def _numbers(text: str | None, n: int | None, name: str, kind: type = float) -> list[Any] | None:
    if text is None:
        return None
    try:
        vals = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{name} expects comma-separated numbers, got {text!r}") from None
    if n is not None and len(vals) != n or not vals:
        raise ConfigError(f"{name} expects {n or 'one or more'} comma-separated numbers, got {text!r}")
    return vals


def _names(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


OnErrorOpt = Annotated[
    OnErrorChoice,
    typer.Option("--on-error", help="fail: stop at the first bad file; skip: list it and go on."),
]
LabelNamesOpt = Annotated[
    str | None,
    typer.Option("--label-names", help="Class names for integer labels 0,1,..., e.g. normal,pneumonia."),
]
FractionsOpt = Annotated[
    str, typer.Option("--fractions", help="train,val,test fractions for rows without a split.")
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the patient-level split.")]
OldOutputOpt = Annotated[Path | None, typer.Option("--output", hidden=True, help="Old spelling of --out.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help=OVERWRITE_HELP)]
QuietAnn = Annotated[bool, typer.Option("--quiet", "-q", help=QUIET_HELP)]
JsonAnn = Annotated[bool, typer.Option("--json", help=JSON_HELP)]


@app.command("index")
def index_cmd(
    source: Annotated[
        Path | None,
        typer.Argument(
            help="Folder (MVTec-AD layout included), labels/LGG/other CSV, MedMNIST .npz, NIfTI volume, "
            "DICOM series .zip or datalist JSON; with --datalist, the folder its paths start from."
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Manifest CSV to write.")] = None,
    datalist: Annotated[
        Path | None,
        typer.Option("--datalist", help="MONAI/Decathlon datalist JSON (training/validation/test lists)."),
    ] = None,
    labels: Annotated[
        Path | None, typer.Option("--labels", help="CSV with columns file,label[,patient_id].")
    ] = None,
    label_names: LabelNamesOpt = None,
    folder_labels: Annotated[
        bool | None,
        typer.Option(
            "--folder-labels/--no-folder-labels", help="Labels from class sub-folders (default: auto)."
        ),
    ] = None,
    mask_suffix: Annotated[str, typer.Option(help="X<suffix>.ext beside X.ext is X's mask.")] = "_mask",
    axis: Annotated[
        int,
        typer.Option(
            help="Volume axis to slice NIfTI volumes across, an axis of the RAS array: 2 (z) axial, "
            "1 (y) coronal, 0 (x) sagittal; slices come in display orientation (as 2-D DICOM/PNG)."
        ),
    ] = 2,
    min_foreground: Annotated[
        float, typer.Option(help="Keep volume slices with this foreground fraction.")
    ] = 0.0,
    from_csv: Annotated[
        bool, typer.Option("--from-csv", help="Read SOURCE (or SOURCE/manifest.csv) as a table.")
    ] = False,
    path_col: Annotated[str | None, typer.Option(help="CSV column with image paths.")] = None,
    label_col: Annotated[str | None, typer.Option(help="CSV column with labels.")] = None,
    mask_col: Annotated[str | None, typer.Option(help="CSV column with mask paths.")] = None,
    patient_col: Annotated[str | None, typer.Option(help="CSV column with patient ids.")] = None,
    split_col: Annotated[str | None, typer.Option(help="CSV column with train/val/test.")] = None,
    assign_split: Annotated[
        bool, typer.Option("--assign-splits/--no-assign-splits", help="Assign blank splits by patient.")
    ] = True,
    fractions: FractionsOpt = "0.7,0.15,0.15",
    seed: SeedOpt = 0,
    on_error: OnErrorOpt = OnErrorChoice.fail,
    overwrite: OverwriteOpt = False,
    output: OldOutputOpt = None,
    old_split: Annotated[bool | None, typer.Option("--split/--no-split", hidden=True)] = None,
) -> None:
    """Build a manifest CSV (path,label,mask,split,patient_id; volume,slice_index for slices of volumes).

    A folder of one DICOM series (one SeriesInstanceUID) is a volume; other DICOM folders: a row per file.
    """
    from vaedx.data.index import Columns, IndexOptions
    from vaedx.data.inspect import render, summarize_manifest
    from vaedx.data.manifest import write_manifest
    from vaedx.data.sources import index_source
    from vaedx.data.splits import assign_splits, parse_fractions

    output = required(pick(out, output, "--output", "--out"), "--out")
    if old_split is not None:
        deprecated("--split/--no-split", "--assign-splits/--no-assign-splits")
        assign_split = old_split
    refuse_existing(output, overwrite)
    opts = IndexOptions(
        labels=labels,
        label_names=_names(label_names),
        folder_labels=folder_labels,
        mask_suffix=mask_suffix,
        axis=axis,
        min_foreground=min_foreground,
        from_csv=from_csv,
        columns=Columns(path_col, label_col, mask_col, patient_col, split_col),
        on_error=on_error.value,
        datalist=datalist,
        fractions=parse_fractions(fractions),
        seed=seed,
    )
    fr = opts.fractions
    m = index_source(source, opts)
    if assign_split:
        assign_splits(m, fr, seed)
    write_manifest(m, output)
    console = Console()
    console.print(f"wrote {output} ({len(m)} rows)", highlight=False, soft_wrap=True)
    render(summarize_manifest(m, sample=0), console)


@app.command("split")
def split_cmd(
    manifest: Annotated[Path, typer.Argument(help="Manifest CSV.")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Manifest to write [MANIFEST, updated in place].")
    ] = None,
    fractions: FractionsOpt = "0.7,0.15,0.15",
    seed: SeedOpt = 0,
    reset: Annotated[bool, typer.Option("--reset", help="Re-split every row, not only blank ones.")] = False,
    overwrite: OverwriteOpt = False,
    output: OldOutputOpt = None,
) -> None:
    """Assign train/val/test by patient, stratified by label; existing splits are kept unless --reset.

    Without --out the manifest itself is updated (that is what the command is for); another existing file
    given as --out is replaced only with --overwrite.
    """
    from vaedx.data.inspect import render, summarize_manifest
    from vaedx.data.manifest import read_manifest, write_manifest
    from vaedx.data.splits import assign_splits, parse_fractions

    output = pick(out, output, "--output", "--out")
    if output is not None and output.resolve() != manifest.resolve():
        refuse_existing(output, overwrite)
    m = read_manifest(manifest)
    if reset:
        for r in m.rows:
            r["split"] = ""
    added = assign_splits(m, parse_fractions(fractions), seed)
    write_manifest(m, output or manifest)
    Console().print(f"assigned {sum(added.values())} rows: {added}", highlight=False, soft_wrap=True)
    render(summarize_manifest(m, sample=0))


@app.command("prepare")
def prepare_cmd(
    source: Annotated[
        Path, typer.Argument(help="Manifest CSV, MedMNIST .npz, or a folder or volume file (indexed first).")
    ],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Store folder to write.")] = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Preprocessing YAML (options override it).")
    ] = None,
    size: Annotated[
        int | None,
        typer.Option(help="Output height = width; default: the source size, or 128 when images are larger."),
    ] = None,
    channels: Annotated[
        str | None, typer.Option(help="Channel indices to keep, e.g. 1 (LGG FLAIR) or 0,1,2.")
    ] = None,
    grey: Annotated[bool | None, typer.Option("--grey/--no-grey", help="Average channels into one.")] = None,
    normalize: Annotated[NormalizeChoice | None, typer.Option(help="Intensity normalisation.")] = None,
    clip_percentiles: Annotated[str | None, typer.Option(help="low,high for --normalize percentile.")] = None,
    fixed_range: Annotated[
        str | None, typer.Option(help="low,high mapped to 0,1 for --normalize fixed.")
    ] = None,
    keep_aspect: Annotated[
        bool | None, typer.Option("--keep-aspect/--stretch", help="Pad instead of stretch.")
    ] = None,
    pad_value: Annotated[float | None, typer.Option(help="Value of the padding.")] = None,
    foreground_mask: Annotated[
        bool | None, typer.Option("--foreground-mask/--no-foreground-mask", help="Zero the background.")
    ] = None,
    foreground_threshold: Annotated[float | None, typer.Option(help="Background threshold (0..1).")] = None,
    window: Annotated[
        str | None,
        typer.Option(help="DICOM/CT window: a name (brain, lung...), auto, or centre,width in HU."),
    ] = None,
    normalize_scope: Annotated[
        ScopeChoice | None,
        typer.Option(
            help="image: intensity statistics per slice; volume: over each whole volume (manifest column "
            "'volume'), inside the brain or foreground, so a lesion does not rescale its own slice."
        ),
    ] = None,
    brain_extraction: Annotated[
        str | None,
        typer.Option(
            "--brain-extraction", metavar="METHOD", help="Skull stripping of volumes before normalising."
        ),
    ] = None,
    target_spacing: Annotated[
        str | None,
        typer.Option(
            metavar="ROW,COL",
            help="Resample volumes in-plane to this spacing in mm before --size (slices stay rows).",
        ),
    ] = None,
    context_slices: Annotated[
        int | None,
        typer.Option(
            "--context-slices",
            metavar="K",
            help="2.5-D: store each slice of a volume with K neighbours above and below as 2K+1 channels "
            "(one channel only; end slices repeated) [0].",
        ),
    ] = None,
    preset: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="brain-mri: statistics over each whole volume and skull stripping with deepbet (needs "
            "volumes and one channel, e.g. --channels 1 for the LGG FLAIR); on 28 LGG patients it raised "
            "mean Dice from 0.22 to 0.52. The options you type and --config win over its values.",
        ),
    ] = None,
    label_names: LabelNamesOpt = None,
    fractions: FractionsOpt = "0.7,0.15,0.15",
    seed: SeedOpt = 0,
    on_error: OnErrorOpt = OnErrorChoice.fail,
    overwrite: OverwriteOpt = False,
    print_config: Annotated[
        bool, typer.Option("--print-config", help="Print the preprocessing as YAML for --config and exit.")
    ] = False,
    quiet: QuietAnn = False,
    as_json: JsonAnn = False,
    output: OldOutputOpt = None,
) -> None:
    """Decode, preprocess and cache every image in a memory-mapped tensor store."""
    from vaedx.data.inspect import render, summarize
    from vaedx.data.prepare import prepare, prepare_config
    from vaedx.data.splits import DEFAULT_FRACTIONS, parse_fractions
    from vaedx.training.progress import task_progress

    cfg = prepare_config(
        config,
        preset=preset,
        size=size,
        channels=_numbers(channels, None, "--channels", int),
        grey=grey,
        normalize=normalize.value if normalize else None,
        clip_percentiles=_numbers(clip_percentiles, 2, "--clip-percentiles"),
        fixed_range=_numbers(fixed_range, 2, "--fixed-range"),
        keep_aspect=keep_aspect,
        pad_value=pad_value,
        foreground_mask=foreground_mask,
        foreground_threshold=foreground_threshold,
        normalize_scope=normalize_scope.value if normalize_scope else None,
        brain_extraction=_brain_method(brain_extraction),
        target_spacing=_numbers(target_spacing, 2, "--target-spacing"),
        context_slices=context_slices,
    )
    if print_config:
        typer.echo(dump_settings(cfg.model_dump(mode="json")), nl=False)
        raise typer.Exit()
    output = required(pick(out, output, "--output", "--out"), "--out")
    refuse_existing(output, overwrite)
    read_options: dict[str, Any] = {}
    if window:
        read_options["window"] = tuple(_numbers(window, 2, "--window") or ()) if "," in window else window
    t0 = time.perf_counter()
    with task_progress("preparing images", quiet=quiet) as bar:
        store = prepare(
            source,
            output,
            cfg,
            on_error=on_error.value,
            read_options=read_options,
            label_names=_names(label_names),
            fractions=parse_fractions(fractions) if fractions else DEFAULT_FRACTIONS,
            seed=seed,
            progress=bar.update,
        )
    seconds = time.perf_counter() - t0
    console = Console(stderr=as_json)
    shape = "x".join(map(str, store.image_shape))
    console.print(
        f"prepared {output}: {len(store)} images of {shape} (CxHxW) in {seconds:.1f} s",
        highlight=False,
        soft_wrap=True,
    )
    chosen = store.meta.get("size_default")
    if chosen:
        console.print(
            f"note: {chosen.get('what', 'slices of volumes')} ({chosen['source'][0]}x{chosen['source'][1]}) "
            f"were resized to {chosen['size']} px, the default for images larger than that; give --size "
            "to choose another",
            highlight=False,
            soft_wrap=True,
        )
    info = summarize(output)
    if as_json:
        print_json({"out": output, "images": len(store), "image_shape": list(store.image_shape),
                    "seconds": seconds, "summary": json.loads(json.dumps(info, default=str))})  # fmt: skip
        return
    render(info, console)


@app.command("inspect")
def inspect_cmd(
    path: Annotated[
        Path, typer.Argument(help="Tensor store, manifest CSV, or any source `vaedx data index` reads.")
    ],
    as_json: JsonAnn = False,
    sample: Annotated[int, typer.Option(help="Images sampled for statistics (manifests: <= 64).")] = 2000,
) -> None:
    """Counts per split x label, sizes, channels, intensities, mask coverage, patients and problems."""
    from vaedx.data.inspect import render, summarize

    info = summarize(path, sample=sample)
    if as_json:
        typer.echo(json.dumps(info, indent=2, default=str))
    else:
        render(info)
