"""The stages of ``vaedx demo`` after the data: train, detect, evaluate, diagnose, report, summary.

Why the project's own functions and not subprocesses: the demo is the README's proof that the pieces work
together, so it must exercise exactly what ``vaedx train|detect|evaluate|diagnose`` run, and one Python
process avoids paying torch's import once per command. Everything lands in the pipeline-folder layout that
``vaedx report`` reads (``store/``, ``models/<name>/``, ``detect/<model>/``, ``diagnosis/``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from vaedx.atomic import atomic_write_json

NORMAL = "normal"
# scorers per model kind: SSIM was the best VAE scorer on PneumoniaMNIST, residual is the classic
# baseline, ELBO the likelihood view; AE and PCA get the two scorers they support.
SCORERS = {"vae": ("ssim", "residual", "elbo"), "ae": ("ssim", "residual"), "pca": ("ssim", "residual")}


@dataclass
class Settings:
    """What the demo trains; the defaults ran in 9 min 53 s on 2 quiet CPU cores, ``quick`` in under 2."""

    epochs: int = 30  # anomaly VAE/AE on normal images: 30 epochs gave VAE+SSIM AUROC 0.863
    epochs_all: int = 12  # diagnosis encoder on all training images (3.9x more images per epoch); 15 epochs
    # took the demo to 10 min 14 s on 2 cores, over its 10-minute budget
    latent_dim: int = 16
    widths: list[int] = field(default_factory=lambda: [32, 64])
    latent_dim_all: int = 32
    max_images: int | None = None  # cap per split for training (quick runs)
    classifiers: tuple[str, ...] = ("logreg", "knn", "mlp", "hgb")
    n_boot: int = 1000
    seed: int = 0
    threads: int | None = None
    device: str = "cpu"  # resolved --device of every stage that runs a network

    @classmethod
    def make(
        cls, quick: bool, epochs: int | None, seed: int, threads: int | None, device: str = "cpu"
    ) -> Settings:
        s = (
            cls(epochs=3, epochs_all=2, max_images=600, classifiers=("logreg",), n_boot=200)
            if quick
            else cls()
        )
        if epochs is not None:
            s.epochs = s.epochs_all = epochs
        s.seed, s.threads, s.device = seed, threads, device
        return s


class Stages:
    """Numbered stage lines with elapsed times; ``timings`` keeps them for summary.json."""

    def __init__(self, console: Console) -> None:
        self.console, self.n, self.timings = console, 0, {}
        self.start = time.perf_counter()

    @contextmanager
    def stage(self, name: str, detail: str = "") -> Iterator[Callable[[str], None]]:
        """Spinner while the stage runs (its text updatable via the yielded function), then one line."""
        self.n += 1
        label = f"{self.n}. {name}"
        t0 = time.perf_counter()
        with self.console.status(f"[bold]{label}[/] {detail}") as status:
            yield lambda text: status.update(f"[bold]{label}[/] {text}")
        dt = time.perf_counter() - t0
        self.timings[name] = round(dt, 2)
        total = time.perf_counter() - self.start
        self.console.print(
            f"[green]done[/] [bold]{label}[/] {detail} [dim]{dt:.1f} s (total {total:.0f} s)[/]",
            highlight=False,
            soft_wrap=True,
        )


def train_model(
    store: Path, out: Path, kind: str, s: Settings, update: Callable[[str], None], **opts: Any
) -> Path:
    """``vaedx train`` for one model; the status line follows the epochs."""
    from vaedx.training.engine import run_training

    epochs = opts.pop("epochs", s.epochs)

    def on_batch(epoch: int, _rows: Any) -> None:
        update(f"{kind}: epoch {epoch}/{epochs}")  # the loop counts epochs from 1

    overrides = {
        "store": store,
        "out": out,
        "kind": kind,
        "epochs": epochs,
        "seed": s.seed,
        "max_images": s.max_images,
        "num_threads": s.threads,
        "device": s.device,
        **opts,
    }
    overrides = {k: v for k, v in overrides.items() if v is not None}
    # the demo's epoch counts were measured as fixed counts: no early stopping, no time budget
    overrides = {"patience": 0, "budget": 0, **overrides}
    return run_training(None, overrides, quiet=True, on_batch=on_batch)


def detect_and_evaluate(model_dir: Path, store: Path, out: Path, kind: str, s: Settings) -> dict[str, Any]:
    """``vaedx detect`` on the test split, then ``vaedx evaluate anomaly`` into out/evaluation.json."""
    from vaedx.anomaly.detect import detect
    from vaedx.evaluate.anomaly import evaluate_anomaly, to_json
    from vaedx.evaluate.card import record_anomaly_evaluation

    detect(model_dir, out, store=store, split="test", scorers=SCORERS[kind], max_overlays=20, quiet=True,
           device=s.device,
           save_calibration=True)  # fmt: skip  # the demo's own models: `vaedx serve` finds their calibration
    result = evaluate_anomaly(out, store, n_boot=s.n_boot, seed=s.seed)
    atomic_write_json(out / "evaluation.json", to_json(result))
    record_anomaly_evaluation(out, out / "evaluation.json", result)  # as `vaedx evaluate anomaly` does
    return result


def diagnose(encoder: Path, store: Path, out: Path, s: Settings) -> dict[str, Any]:
    """``vaedx diagnose fit`` then ``vaedx evaluate diagnosis`` on the test split (evaluation_test.json)."""
    from vaedx.data.store import TensorStore
    from vaedx.diagnose.encoder import as_loaded
    from vaedx.diagnose.fit import fit_diagnosis, split_probabilities
    from vaedx.evaluate.card import record_diagnosis_evaluation
    from vaedx.evaluate.diagnosis import evaluate_probabilities

    loaded = as_loaded(encoder, device=s.device)
    diag = fit_diagnosis(loaded, store, out=out, seed=s.seed, candidates=s.classifiers)
    diag, y, proba, rows = split_probabilities(diag, loaded, store, "test")
    groups = TensorStore.open(store).patient_ids[rows]
    result = evaluate_probabilities(diag, y, proba, groups=groups, n_boot=s.n_boot, seed=s.seed)
    result["split"] = "test"
    atomic_write_json(out / "evaluation_test.json", result)
    record_diagnosis_evaluation(out, out / "evaluation_test.json", result)  # as `vaedx evaluate diagnosis`
    result["chosen"] = diag.meta["chosen"]
    return result


def build_report(out: Path, seed: int, device: str = "cpu") -> Path:
    """The HTML report of the demo's run folder (``report.html``)."""
    from vaedx.report import build_report as build

    return Path(build(out, seed=seed, device=device))


def _ci(v: Any) -> dict[str, float | None] | None:
    """BootstrapCI / (point, low, high) / {point, low, high} -> {point, low, high}; None stays None."""
    if v is None:
        return None
    if isinstance(v, dict):
        return {k: float(v[k]) for k in ("point", "low", "high")}
    if isinstance(v, int | float):  # the bootstrap was undefined: a point estimate without an interval
        return {"point": float(v), "low": None, "high": None}
    p, lo, hi = (float(x) for x in v)
    return {"point": p, "low": lo, "high": hi}


def anomaly_rows(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per model x scorer: image AUROC/AUPRC/FPR@95TPR with their CIs."""
    rows = []
    for model, res in results.items():
        for scorer, entry in res["scorers"].items():
            m = entry["metrics"]
            rows.append(
                {
                    "model": model,
                    "scorer": scorer,
                    "auroc": _ci(m.get("auroc")),
                    "auprc": _ci(m.get("auprc")),
                    "fpr@95tpr": _ci(m.get("fpr@95tpr")),
                }
            )
    return rows


def paired_rows(detect_dir: Path, store: Path, s: Settings) -> list[dict[str, Any]]:
    """VAE minus AE and minus PCA in image AUROC for every scorer they share, by paired bootstrap: two
    overlapping marginal CIs cannot say which model is ahead, the interval of the difference can."""
    from vaedx.evaluate.compare import Side, compare_scorers

    rows = []
    for other in ("ae", "pca"):
        for scorer in (x for x in SCORERS["vae"] if x in SCORERS[other]):
            a = Side(detect_dir / "vae", scorer, f"vae:{scorer}")
            b = Side(detect_dir / other, scorer, f"{other}:{scorer}")
            d = compare_scorers(a, b, store, n_boot=s.n_boot, seed=s.seed)["differences"]["auroc"]
            diff = None if d is None else {"point": d.point, "low": d.low, "high": d.high}
            rows.append({"a": a.label, "b": b.label, "auroc_diff": diff,
                         "p_not_better": None if d is None else d.p_not_better})  # fmt: skip
    return rows


def diagnosis_row(result: dict[str, Any]) -> dict[str, Any]:
    ci = result["ci"]
    keys = ("auc", "accuracy", "sensitivity", "specificity", "f1", "ece")
    return {"n": result["table"][0]["n"], **{k: _ci(ci.get(k)) for k in keys}}


def _cell(v: dict[str, float | None] | None) -> Any:
    if v is None or v["low"] is None:
        return None if v is None else v["point"]
    return (v["point"], v["low"], v["high"])


def print_headline(summary: dict[str, Any], console: Console) -> None:
    """The two tables the README quotes: anomaly per model/scorer, diagnosis, all with 95 % CIs."""
    from vaedx.evaluate.tables import format_table

    a = summary["anomaly"]
    rows = [
        {"model": r["model"], "scorer": r["scorer"], "AUROC": _cell(r["auroc"]), "AUPRC": _cell(r["auprc"])}
        for r in a["rows"]
    ]
    title = f"anomaly detection, {a['dataset']} test ({a['n_test']} images, {a['n_abnormal']} abnormal)"
    console.print(format_table(rows, title=title))
    if a.get("paired"):
        rows = [{"A": r["a"], "B": r["b"], "Δ AUROC [95% CI]": _cell(r["auroc_diff"]),
                 "p (A not better)": r["p_not_better"]} for r in a["paired"]]  # fmt: skip
        console.print(format_table(rows, title="VAE minus baselines, paired bootstrap on the same images"))
    d = summary.get("diagnosis")
    if d:
        names = {"auc": "AUC", "accuracy": "ACC", "sensitivity": "sensitivity", "specificity": "specificity"}
        rows = [{"metric": label, "value [95% CI]": _cell(d["test"][k])} for k, label in names.items()]
        title = (
            f"diagnosis, {a['dataset']} test ({d['test']['n']} images): "
            f"{d['encoder']} latent + {d['classifier']}"
        )
        console.print(format_table(rows, title=title))


def write_summary(out: Path, summary: dict[str, Any]) -> Path:
    return atomic_write_json(out / "summary.json", summary)


def settings_dict(s: Settings) -> dict[str, Any]:
    d = asdict(s)
    d["classifiers"] = list(s.classifiers)
    return d
