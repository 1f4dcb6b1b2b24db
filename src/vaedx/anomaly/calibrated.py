"""The scorer set-up stored beside a model: which scorer, its options, map post-processing and thresholds.

Why one place: a calibrated threshold belongs to one scorer, its options and its post-processing, so every
consumer that scores single images outside ``vaedx detect`` (the service, ``vaedx diagnose predict
--anomaly-model``) must score with exactly those (``run_scorers``) for its score and flag to equal
``vaedx detect``'s. A thresholds.json that cannot be read is refused, as ``vaedx detect`` refuses it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vaedx.anomaly.calibration import CalibrationFile, thresholds_path
from vaedx.anomaly.scoring import PostSpec
from vaedx.errors import ConfigError, InputError

DEFAULT_SCORER = "residual"


@dataclass
class Calibration:
    """The scorer the service runs, with the options, post-processing and thresholds it was calibrated with.

    Thresholds are None when thresholds.json has no entry for the scorer: then it is scored with default
    options and raw maps, and nothing is flagged (``problem`` says why).
    """

    scorer: str = DEFAULT_SCORER
    options: dict[str, Any] = field(default_factory=dict)
    post: PostSpec = field(default_factory=PostSpec)
    image_threshold: float | None = None
    pixel_threshold: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    calibrated_scorers: list[str] = field(default_factory=list)
    problem: str | None = None


def resolve_scoring(model_path: Any, offered: list[str], requested: str | None = None) -> Calibration:
    """The scorer set-up for a model whose checkpoint folder is ``model_path``.

    ``requested`` (``vaedx serve --scorer``) must be a scorer this model offers. Without it: residual when it
    is calibrated or nothing is, else the first calibrated scorer the model offers. Raises InputError for an
    unreadable or invalid thresholds.json and ConfigError for a scorer the model cannot run.
    """
    cal_file = CalibrationFile.load(model_path)
    calibrated = sorted(cal_file.scorers)
    if requested is not None and requested not in offered:
        raise ConfigError(f"scorer '{requested}' does not work with this model; choose {', '.join(offered)}")
    name = requested
    if name is None:
        usable = [s for s in calibrated if s in offered]
        name = DEFAULT_SCORER if DEFAULT_SCORER in usable or not usable else usable[0]
    entry = cal_file.scorers.get(name)
    if entry is None:
        where = thresholds_path(model_path).name
        why = f"no calibrated thresholds for scorer '{name}' in {where}" + (
            f" (calibrated: {', '.join(calibrated)})" if calibrated else ""
        )
        how = "; to calibrate, run `vaedx detect --model RUN --store STORE --save-calibration`"
        return Calibration(
            scorer=name, calibrated_scorers=calibrated, problem=why + "; nothing is flagged" + how
        )
    thr = entry.thresholds
    try:
        post = PostSpec(**entry.postprocess)
    except TypeError:
        bad = f"invalid postprocess for '{name}': {entry.postprocess}"
        raise InputError(bad, thresholds_path(model_path)) from None
    details = {
        "method": thr.method,
        "target_specificity": thr.target_specificity,
        "n_calibration": thr.n_calibration,
        "split": entry.split,
        "normal_label": entry.normal_label,
    }
    return Calibration(
        scorer=name,
        options=dict(entry.options),
        post=post,
        image_threshold=thr.image_threshold,
        pixel_threshold=thr.pixel_threshold,
        details=details,
        calibrated_scorers=calibrated,
    )
