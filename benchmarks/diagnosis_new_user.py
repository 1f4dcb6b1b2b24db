"""Diagnosis as a new user gets it: the README's commands with their defaults, the same command line on every
data set, beside the supervised CNN of the same architecture given the same budget (tables 4 and 5 of
``benchmarks/diagnosis.py``).

Per data set, in a folder of its own (each step is skipped when its output exists, so a rerun resumes)::

    vaedx data prepare SRC -o store                     # defaults: images over 128 px become 128 px
    vaedx train --store store --out vae                 # all training images, no labels; epochs chosen on val
    vaedx diagnose finetune --model vae --store store --out ft          # --recipe auto, --budget 10
    vaedx diagnose fit --model ft --store store --out diag --features mu
    vaedx evaluate diagnosis --diagnosis diag --store store
    vaedx diagnose finetune --model vae --store store --out cnn --init random   # same search, random weights
    vaedx diagnose fit --model cnn --store store --out cnn_diag --features mu
    vaedx evaluate diagnosis --diagnosis cnn_diag --store store

The data sets: PneumoniaMNIST (official splits), the LGG FLAIR slices (tumour / no tumour, split by
patient) and the Cheng T1-CE set (three tumour types; no patient ids, so its splits and intervals are by
image and optimistic). Every step's wall time is recorded; the recipe's budget is wall time, so the
figures depend on the machine's load, which is recorded beside them.

Table 5 is the cost of one epoch at 64, 128 and 224 px on the Cheng set (VAE training, and fine-tuning
with the fixed recipe), measured on full epochs. Sections ``new_user_cheng_64`` / ``_128`` / ``_224`` run
the same commands on the Cheng set prepared at that size (``--size``) with the ConvVAE at every size
(``--arch conv``) and 20 fixed epochs, so that diagnosis AUC by input size is not confounded with the
network or the training length.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from results_io import load, save

from vaedx.data.locate import find_data_file

SOURCES = {  # what a user points `vaedx data prepare` at
    "pneu": "pneumoniamnist/pneumoniamnist.npz",
    "lgg": "brain_lgg/manifest.csv",
    "cheng": "brain_cheng_figshare/manifest.csv",
}
SPLITS_BY = {"pneu": "official split", "lgg": "patient", "cheng": "image (no patient ids: optimistic)"}
ANCHOR = {"pneu": "ResNet-18 (28) 0.944 / 0.854 (MedMNIST v2)", "lgg": "-", "cheng": "-"}
RESOLUTIONS = (64, 128, 224)


def vaedx_bin() -> str:
    return str(Path(sys.executable).with_name("vaedx"))


def source_of(name: str) -> Path:
    hit = find_data_file(SOURCES[name], None)
    if hit is None:
        raise SystemExit("real data not found (set VAEDX_DATA_DIR)")
    return hit if name == "pneu" else hit.parent


def _step(doc: dict[str, Any], key: str, done: Path, args: list[str], log: Path) -> None:
    """Run ``vaedx ARGS`` unless ``done`` exists; record its wall time and the load average beside it."""
    if done.exists() and key in doc["steps"]:
        return
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    with log.open("a") as f:
        f.write(f"$ vaedx {' '.join(args)}\n")
        f.flush()
        code = subprocess.call([vaedx_bin(), *args], stdout=f, stderr=subprocess.STDOUT)
    if code != 0:
        raise SystemExit(f"vaedx {' '.join(args)} failed ({code}); see {log}")
    seconds = round(time.perf_counter() - t0, 1)
    after = round(os.getloadavg()[0], 2)
    doc["steps"][key] = {"command": "vaedx " + " ".join(args), "seconds": seconds,
                         "load_before": round(load, 2), "load_after": after}  # fmt: skip


def sec_new_user(name: str, size: int | None = None, arch: str | None = None) -> Any:
    """The new-user commands on one data set; with ``size`` the store is prepared at that side (``--size``)
    and the VAE trained with ``--arch`` for 20 fixed epochs (the same training at every size)."""
    key = f"new_user_{name}" + (f"_{size}" if size else "")

    def run(out: Path, cfg: Any, paths: dict[str, Path]) -> None:
        root = out / "new_user" / key.removeprefix("new_user_")
        root.mkdir(parents=True, exist_ok=True)
        log = root / "commands.log"
        doc = load(out, key) or {"data": name, "splits_by": SPLITS_BY[name], "steps": {}}
        doc |= {"size": size, "arch": arch}
        st, vae = str(root / "store"), str(root / "vae")
        quick = ["--max-images", "200", "--epochs", "1"] if cfg.quick else []
        budget = ["--budget", "0.5"] if cfg.quick else []
        sized = ["--size", str(size)] if size else []
        # by size: the same network and the same 20 fixed epochs at every size (the training defaults before
        # epochs were chosen on validation), so that only the size differs
        network = ["--arch", arch, "--epochs", "20", "--patience", "0", "--budget", "0"] if arch else []
        _step(doc, "prepare", root / "store" / "store.json",
              ["data", "prepare", str(source_of(name)), "-o", st, *sized], log)  # fmt: skip
        _step(doc, "train", root / "vae" / "best",
              ["train", "--store", st, "--out", vae, *network, *quick], log)  # fmt: skip
        save(out, key, doc)
        for arm, init in (("ft", "vae"), ("cnn", "random")):
            run_dir, diag = root / arm, root / f"{arm}_diag"
            _step(doc, f"{arm}_finetune", run_dir / "best",
                  ["diagnose", "finetune", "--model", vae, "--store", st, "--out", str(run_dir),
                   "--init", init, *budget], log)  # fmt: skip
            _step(doc, f"{arm}_fit", diag / "diagnosis.json",
                  ["diagnose", "fit", "--model", str(run_dir), "--store", st, "--out", str(diag),
                   "--features", "mu"], log)  # fmt: skip
            _step(doc, f"{arm}_evaluate", diag / "evaluation_test.json",
                  ["evaluate", "diagnosis", "--diagnosis", str(diag), "--store", st], log)  # fmt: skip
            recipe = json.loads((run_dir / "recipe.json").read_text())
            ev = json.loads((diag / "evaluation_test.json").read_text())
            doc[arm] = {"test": ev["ci"], "chosen": recipe["chosen"], "trials_run": recipe["trials_run"],
                        "planned_trials": recipe["planned_trials"]}  # fmt: skip
            save(out, key, doc)
            print(f"  new user {key} {arm}: {json.dumps(ev['ci'])[:200]}", flush=True)

    return run


def sec_resolution(out: Path, cfg: Any, paths: dict[str, Path]) -> None:
    """Seconds per epoch on the Cheng set at 64, 128 and 224 px: one full epoch of VAE training and one of
    fine-tuning (fixed recipe) each, on the same 430 training images."""
    rows = (load(out, "resolution") or {}).get("rows", [])
    done = {r["size"] for r in rows}
    for size in RESOLUTIONS:
        if size in done:
            continue
        root = out / "resolution" / str(size)
        root.mkdir(parents=True, exist_ok=True)
        doc: dict[str, Any] = {"steps": {}}
        st, vae, log = str(root / "store"), str(root / "vae"), root / "commands.log"
        cap = ["--max-images", "64"] if cfg.quick else []
        _step(doc, "prepare", root / "store" / "store.json",
              ["data", "prepare", str(source_of("cheng")), "-o", st, "--size", str(size)], log)  # fmt: skip
        _step(doc, "train", root / "vae" / "best",
              ["train", "--store", st, "--out", vae, "--epochs", "1", *cap], log)  # fmt: skip
        _step(doc, "finetune", root / "ft" / "best",
              ["diagnose", "finetune", "--model", vae, "--store", st, "--out", str(root / "ft"), "--recipe",
               "fixed", "--epochs", "1", "--min-steps", "0"], log)  # fmt: skip
        metrics = (root / "vae" / "metrics.csv").read_text().splitlines()
        steps = doc["steps"]
        rows.append({"size": size, "train_epoch_s": steps["train"]["seconds"],
                     "finetune_epoch_s": steps["finetune"]["seconds"],
                     "load": steps["train"]["load_before"], "metrics_rows": len(metrics) - 1})  # fmt: skip
        note = "command wall time, start-up and validation included"
        save(out, "resolution", {"rows": rows, "note": note})
        print(f"  resolution {size}: {rows[-1]}", flush=True)


def _auc(ci: dict[str, Any]) -> Any:
    return ci.get("auc", ci.get("macro_auc"))


def _fmt(v: Any) -> str:
    """[point, lo, hi] as "point [lo, hi]"."""
    if isinstance(v, list) and len(v) == 3 and None not in v:
        return f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]"
    return "-" if v is None else str(v)


def print_new_user_tables(out: Path) -> None:
    print("\n## 4. New user, defaults, one command line on every data set: VAE (auto recipe) vs CNN, "
          "same search and budget")
    print("| data | split by | arm | chosen | test AUC (macro) | test ACC | min (train / finetune) | load |")
    print("|---|---|---|---|---|---|---|---|")
    for key in NEW_USER_KEYS:
        doc = load(out, key)
        if not doc:
            continue
        name = doc["data"] + (f" {doc['size']} px, {doc['arch']}" if doc.get("size") else "")
        for arm, label in (("ft", "VAE + auto recipe"), ("cnn", "CNN, same search, random init")):
            if arm not in doc:
                continue
            r, steps = doc[arm], doc["steps"]
            ch = r["chosen"]
            tuned = f"lr {ch.get('lr')}, aug {ch.get('augment')}"
            chosen = "frozen" if ch.get("encoder") == "frozen" else tuned
            mins = f"{steps['train']['seconds'] / 60:.1f} / {steps[f'{arm}_finetune']['seconds'] / 60:.1f}"
            print(f"| {name} | {doc['splits_by']} | {label} | {chosen} | {_fmt(_auc(r['test']))} | "
                  f"{_fmt(r['test'].get('accuracy'))} | {mins} | {steps[f'{arm}_finetune']['load_before']} |")
    res = load(out, "resolution")
    if res:
        print("\n## 5. Cost of one epoch on the Cheng set (430 training images), seconds of wall time")
        print("| size | VAE training epoch | fine-tuning epoch | load |")
        print("|---|---|---|---|")
        for r in res["rows"]:
            print(f"| {r['size']} | {r['train_epoch_s']} | {r['finetune_epoch_s']} | {r['load']} |")


SECTIONS = {f"new_user_{n}": sec_new_user(n) for n in SOURCES} | {"resolution": sec_resolution}
# diagnosis AUC by input size on the Cheng set (512 px images), the ConvVAE at every size
SECTIONS |= {f"new_user_cheng_{px}": sec_new_user("cheng", px, "conv") for px in RESOLUTIONS}
NEW_USER_KEYS = [k for k in SECTIONS if k.startswith("new_user_")]
