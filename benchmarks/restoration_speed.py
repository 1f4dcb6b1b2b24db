"""Restoration scoring, reference vs current: images/s, speed-up and score agreement on real LGG slices.

Why: restoration is the best brain-MRI scorer and the slowest. This script keeps, as
``ReferenceRestoration`` below, the implementation the scorer had before it learnt batching with per-image
Adam, frozen weights and the early stop, and scores the same real FLAIR slices with both in one run, so
the speed-up and the agreement are measured on the same machine state. The agreement printed: Spearman of
the image scores, the largest absolute map difference, image AUROC/AUPRC (slice has a lesion) and pixel
AUPRC of each. The current scorer runs twice: with the early stop off (``tol=0``: must match the reference
to float rounding) and with ``--tol`` at each of ``--current-steps``.

Today against before, as a user meets them: the reference scorer runs on a ConvVAE of ``--reference-arch``
(conv, the default network at every size before ``auto``) and the current one on a model of ``--arch`` (conv-
fast, what ``auto`` builds from 128 px), both trained the same way on the same slices. With two archs the maps
differ by more than rounding, so the script also prints the paired bootstrap of pixel AUPRC (current minus
reference, resampling whole patients) and each one's image AUROC/AUPRC: the speed-up only counts where the
figures hold.

Data and model: FLAIR slices of the first ``--train-patients`` LGG patients without a lesion train a small
ConvVAE for ``--epochs`` (speed does not depend on the weights, agreement does, so the model must have
learnt something); the next ``--eval-patients`` patients' slices (with and without lesions) are scored.
The machine is shared, so the scorers are timed in alternation (``--rounds``, median) and the 1-minute load
average is printed beside every timing.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/restoration_speed.py [--sizes 64,128] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr

from vaedx.anomaly.base import BaseScorer, _Batch, _neg_elbo
from vaedx.anomaly.restoration import RestorationScorer
from vaedx.data.locate import find_data_file
from vaedx.data.preprocess import PreprocessConfig
from vaedx.data.volume_prep import prepare_volume
from vaedx.io.slice_stack import read_lgg_patient
from vaedx.metrics.bootstrap import bootstrap_pixel_paired
from vaedx.metrics.measures import auprc, auroc
from vaedx.models import ModelConfig, build_model


class ReferenceRestoration(BaseScorer):
    """REFERENCE ONLY: the restoration scorer as it was before the speed work (torch.optim.Adam over the
    whole batch, weights left trainable, every step for every image). Kept here to measure against."""

    name = "restoration_reference"
    needs_grad = True

    def __init__(self, model: Any, steps: int = 100, lr: float = 5e-3, lam: float = 1.0, **opts: Any):
        super().__init__(model, **opts)
        self.steps, self.lr, self.lam = steps, lr, lam

    def _objective(self, x_r: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        d = x_r - x
        dh = (d[..., 1:, :] - d[..., :-1, :]).abs().flatten(1).sum(1)
        tv = dh + (d[..., :, 1:] - d[..., :, :-1]).abs().flatten(1).sum(1)
        return _neg_elbo(self.model, x_r)[0] + self.lam * tv

    def _score_batch(self, x: torch.Tensor, generator: torch.Generator) -> _Batch:
        x = x.detach()
        x_r = x.clone().requires_grad_(True)
        opt = torch.optim.Adam([x_r], lr=self.lr)
        best, best_obj = x.clone(), torch.full((x.shape[0],), math.inf, device=x.device)
        for step in range(self.steps + 1):
            obj = self._objective(x_r, x)
            better = obj.detach() < best_obj
            best[better], best_obj[better] = x_r.detach()[better], obj.detach()[better]
            if step < self.steps:
                (x_r.grad,) = torch.autograd.grad(obj.sum(), x_r)
                opt.step()
        return _Batch(self._reduce((x - best).abs()), extra={"restored": best})


def lgg_slices(
    size: int, first: int, count: int, brain_only: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N,1,S,S) FLAIR slices, (N,S,S) masks and (N,) patient numbers of ``count`` patients from ``first``
    (sorted by name)."""
    root = find_data_file("brain_lgg/manifest.csv").parent
    cases = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("TCGA"))
    cases = cases[first : first + count]
    cfg = PreprocessConfig(size=(size, size), channels=[1], normalize_scope="volume")
    xs, ms, ids = [], [], []
    for i, case in enumerate(cases):
        vol, mask = read_lgg_patient(case)
        p = prepare_volume(vol, cfg, mask)
        assert p.masks is not None
        keep = p.slices.reshape(len(p.slices), -1).mean(1) > (0.05 if brain_only else -1)
        xs.append(p.slices[keep]), ms.append(p.masks[keep]), ids.append(np.full(int(keep.sum()), i))
    return np.concatenate(xs).astype(np.float32), np.concatenate(ms).astype(bool), np.concatenate(ids)


def train_vae(x: np.ndarray, size: int, epochs: int, arch: str) -> torch.nn.Module:
    cfg = ModelConfig(
        in_channels=1, image_size=(size, size), widths=[16, 32, 64, 128], latent_dim=32, arch=arch
    )
    torch.manual_seed(0)
    model = build_model(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    data = torch.from_numpy(x)
    for _ in range(epochs):
        for idx in torch.randperm(len(data)).split(32):
            terms = model.elbo_terms(data[idx], model(data[idx]))
            opt.zero_grad()
            (terms["recon_nll"] + terms["kl"]).mean().backward()
            opt.step()
    return model.eval()


def timed(scorer: BaseScorer, x: np.ndarray) -> tuple[Any, float]:
    t0 = time.perf_counter()
    res = scorer.score(x)
    return res, len(x) / (time.perf_counter() - t0)


def agreement(
    ref: Any, new: Any, labels: np.ndarray, masks: np.ndarray, patients: np.ndarray
) -> dict[str, Any]:
    def fig(r: Any) -> dict[str, float | None]:
        return {"auroc": auroc(labels, r.scores), "auprc": auprc(labels, r.scores),
                "pixel_auprc": auprc(masks.ravel(), r.maps.ravel())}  # fmt: skip

    rho = spearmanr(ref.scores, new.scores).statistic
    paired = bootstrap_pixel_paired("auprc", new.maps, ref.maps, masks, groups=patients, n_boot=500)
    return {"spearman": round(float(rho), 6), "max_abs_map_diff": float(np.abs(ref.maps - new.maps).max()),
            "reference": fig(ref), "current": fig(new),
            "pixel_auprc_current_minus_reference": [paired.point, paired.low, paired.high]}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="64,128")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--train-patients", type=int, default=3)
    ap.add_argument("--eval-patients", type=int, default=1)
    ap.add_argument("--n", type=int, default=32, help="slices scored (evenly spaced over the eval patients)")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--arch", default="conv-fast", help="network of the current scorer's model")
    ap.add_argument("--reference-arch", default="conv", help="network of the reference scorer's model")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--current-steps", default=None, help="comma list for the current scorer [--steps]")
    ap.add_argument("--lam", type=float, default=1.0)
    ap.add_argument("--tol", type=float, default=None, help="early-stop tolerance (default: the scorer's)")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--rounds", type=int, default=2, help="timed calls per scorer, alternating (median)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/vaedx_restoration_speed.jsonl"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    tol = RestorationScorer.default_tol if a.tol is None else a.tol
    for size in (int(s) for s in a.sizes.split(",")):
        train, train_masks, _ = lgg_slices(size, 0, a.train_patients, brain_only=True)
        healthy = train[~train_masks.reshape(len(train), -1).any(1)]
        models = {arch: train_vae(healthy, size, a.epochs, arch) for arch in {a.reference_arch, a.arch}}
        model, ref_model = models[a.arch], models[a.reference_arch]
        x, masks, patients = lgg_slices(size, a.train_patients, a.eval_patients, brain_only=True)
        pick = np.linspace(0, len(x) - 1, min(a.n, len(x))).round().astype(int)
        x, masks, patients = x[pick], masks[pick], patients[pick]
        labels = masks.reshape(len(x), -1).any(1)
        common = {"lam": a.lam, "batch_size": 32}
        cl = a.channels_last
        current = [int(v) for v in (a.current_steps or str(a.steps)).split(",")]
        scorers: dict[str, BaseScorer] = {
            "reference": ReferenceRestoration(ref_model, steps=a.steps, **common),
            "current_tol0": RestorationScorer(model, steps=a.steps, tol=0.0, channels_last=cl, **common),
        }
        for n_steps in current:
            scorers[f"current_{n_steps}"] = RestorationScorer(
                model, steps=n_steps, tol=tol, channels_last=cl, **common
            )
        scorers["reference"].score(x[:2])  # warm-up
        results, rates, load = {}, {k: [] for k in scorers}, {k: [] for k in scorers}
        for _ in range(a.rounds):  # alternate the scorers, so a change in the machine's load hits all alike
            for name, sc in scorers.items():
                load[name].append(round(os.getloadavg()[0], 2))
                results[name], ips = timed(sc, x)
                rates[name].append(ips)
        speed = {k: float(np.median(v)) for k, v in rates.items()}
        for name in (k for k in scorers if k != "reference"):
            steps_taken = results[name].extra["steps"]
            row = {
                "size": size, "threads": a.threads, "n": len(x), "lesion_slices": int(labels.sum()),
                "steps": a.steps, "current_steps": scorers[name].steps, "lam": a.lam,
                "tol": scorers[name].tol, "variant": name,
                "arch": a.arch, "reference_arch": a.reference_arch, "epochs": a.epochs,
                "reference_images_per_s": round(speed["reference"], 2),
                "images_per_s": round(speed[name], 2), "speedup": round(speed[name] / speed["reference"], 2),
                "mean_steps_taken": float(steps_taken.mean()),
                "loadavg_1min": {"reference": load["reference"], name: load[name]},
                **agreement(results["reference"], results[name], labels, masks, patients),
            }  # fmt: skip
            print(json.dumps(row), flush=True)
            a.out.parent.mkdir(parents=True, exist_ok=True)
            with a.out.open("a") as fh:
                fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
