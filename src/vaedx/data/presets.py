"""Named preprocessing presets for ``vaedx data prepare --preset``: the measured best way to prepare a kind
of data, so a user need not know which of the volume steps matter.

A preset only fills in fields; a YAML file and the options typed on the command line win over it, and the
store's ``store.json`` records the values it produced, so a store is reproduced from its own folder. It is
data, not code, for the same reason as the training presets in :mod:`vaedx.runs.presets` (which the data
layer cannot import).
"""

from __future__ import annotations

from typing import Any

from vaedx.errors import ConfigError

# brain-mri: statistics over each whole volume and skull stripping (deepbet) before normalising. On all 28
# LGG patients (128 px, 2-fold cross-validation by patient, benchmarks/brain_mri.py) skull stripping raised
# the mean per-patient Dice of `vaedx train --preset brain-mri` from 0.221 to 0.521 and its voxel AUPRC from
# 0.172 to 0.564, the default VAE's from 0.144 to 0.385, and the FLAIR threshold's from 0.195 to 0.506: on
# FLAIR the scalp and fat are as bright as a tumour (docs/brain-extraction.md, docs/comparison.md).
PREPARE_PRESETS: dict[str, dict[str, Any]] = {
    "brain-mri": {"normalize_scope": "volume", "brain_extraction": "deepbet"},
}
PREPARE_PRESET_NAMES: tuple[str, ...] = tuple(PREPARE_PRESETS)


def prepare_preset(name: str | None) -> dict[str, Any]:
    """The field values of preset ``name`` (an empty dict for None); an unknown name is a ConfigError."""
    if name is None:
        return {}
    if name not in PREPARE_PRESETS:
        raise ConfigError(f"unknown preset {name!r}: use one of {', '.join(PREPARE_PRESET_NAMES)}")
    return dict(PREPARE_PRESETS[name])
