"""Patient-level train/val/test splits, stratified by label as far as whole patients allow.

Why patient level: slices of one patient are near-duplicates, so a patient in both train and test inflates
every metric. Why not scikit-learn's ``StratifiedGroupKFold``: it gives equal folds (fractions 1/k only) and
cannot keep rows that already carry a split; the greedy assignment below hits any fractions and treats
existing splits as fixed. Patients are visited in a seeded random order and each goes to the split whose
per-label counts are furthest below target, so the result is reproducible per seed and changes with it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vaedx.data.manifest import Manifest
from vaedx.data.store import SPLITS
from vaedx.errors import ConfigError, InputError

DEFAULT_FRACTIONS = (0.7, 0.15, 0.15)


def parse_fractions(text: str | Sequence[float]) -> tuple[float, float, float]:
    try:
        vals = [float(v) for v in (text.split(",") if isinstance(text, str) else text)]
    except ValueError:
        vals = []
    if len(vals) != 3 or any(v < 0 for v in vals) or not np.isclose(sum(vals), 1.0, atol=1e-3):
        raise ConfigError(f"split fractions must be three non-negative numbers summing to 1, got {text!r}")
    return vals[0], vals[1], vals[2]


def assign_splits(
    manifest: Manifest, fractions: Sequence[float] = DEFAULT_FRACTIONS, seed: int = 0
) -> dict[str, int]:
    """Fill blank ``split`` values in place; returns how many rows each split received."""
    fractions = parse_fractions(fractions)
    rows = manifest.rows
    pid = [r.get("patient_id") or r["path"] for r in rows]
    labels = sorted({r.get("label", "") for r in rows})
    lab_idx = {lab: i for i, lab in enumerate(labels)}

    fixed: dict[str, str] = {}
    for p, r in zip(pid, rows, strict=True):
        s = r.get("split", "")
        if s and fixed.setdefault(p, s) != s:
            raise InputError(
                f"patient {p!r} already appears in splits {fixed[p]!r} and {s!r}; fix the manifest",
                manifest.where,
            )

    # per-patient label counts of the rows still to assign, and the running totals per split x label
    need: dict[str, np.ndarray] = {}
    current = np.zeros((len(SPLITS), len(labels)))
    total = np.zeros(len(labels))
    for p, r in zip(pid, rows, strict=True):
        li = lab_idx[r.get("label", "")]
        total[li] += 1
        if r.get("split"):
            current[SPLITS.index(r["split"]), li] += 1
        else:
            need.setdefault(p, np.zeros(len(labels)))[li] += 1
    target = np.outer(fractions, total)
    scale = 1.0 / np.maximum(total, 1.0)

    chosen: dict[str, str] = {}
    order = list(need)
    np.random.default_rng(seed).shuffle(order)
    for p in order:
        if p in fixed:
            s_idx = SPLITS.index(fixed[p])
        else:
            # growth of the squared, per-label-normalised distance to target if this patient joins split s
            cost = [
                float(
                    (((current[s] + need[p] - target[s]) ** 2 - (current[s] - target[s]) ** 2) * scale).sum()
                )
                if fractions[s] > 0
                else np.inf
                for s in range(len(SPLITS))
            ]
            s_idx = int(np.argmin(cost))
        current[s_idx] += need[p]
        chosen[p] = SPLITS[s_idx]

    added = dict.fromkeys(SPLITS, 0)
    for p, r in zip(pid, rows, strict=True):
        if not r.get("split"):
            r["split"] = chosen[p]
            added[chosen[p]] += 1
    return added


def patient_overlap(splits: Sequence[str], patients: Sequence[str]) -> dict[str, list[str]]:
    """Patients found in more than one split (patient -> sorted splits)."""
    seen: dict[str, set[str]] = {}
    for s, p in zip(splits, patients, strict=True):
        if s and p:
            seen.setdefault(str(p), set()).add(str(s))
    return {p: sorted(s) for p, s in seen.items() if len(s) > 1}
