from __future__ import annotations

import pytest
import yaml

from vaedx.data.prepare import prepare_config
from vaedx.data.presets import PREPARE_PRESET_NAMES, prepare_preset
from vaedx.errors import ConfigError


@pytest.mark.parametrize("name", PREPARE_PRESET_NAMES)
def test_every_preset_is_a_valid_preprocessing(name: str) -> None:
    values = prepare_preset(name)
    cfg = prepare_config(preset=name)
    assert values and all(getattr(cfg, k) == v for k, v in values.items())


def test_brain_mri_strips_the_skull_and_normalises_per_volume() -> None:
    cfg = prepare_config(preset="brain-mri")
    assert (cfg.brain_extraction, cfg.normalize_scope) == ("deepbet", "volume") and cfg.volume_steps


def test_a_yaml_file_beats_the_preset_and_typed_options_beat_both(tmp_path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump({"normalize_scope": "image", "size": 64}))
    cfg = prepare_config(f, preset="brain-mri")
    assert (cfg.normalize_scope, cfg.brain_extraction, cfg.size) == ("image", "deepbet", (64, 64))
    cfg = prepare_config(f, preset="brain-mri", brain_extraction="none", size=32)
    assert (cfg.normalize_scope, cfg.brain_extraction, cfg.size) == ("image", "none", (32, 32))


def test_no_preset_changes_nothing_and_an_unknown_one_is_a_one_line_error() -> None:
    assert prepare_preset(None) == {} and prepare_config(preset=None) == prepare_config()
    with pytest.raises(ConfigError, match="unknown preset 'brain': use one of brain-mri"):
        prepare_config(preset="brain")
