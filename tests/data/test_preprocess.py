"""PreprocessConfig's volume fields and channel selection on real LGG and DICOM pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydantic import ValidationError

from vaedx.data.preprocess import (
    PreprocessConfig,
    apply,
    channel_mapped,
    normalize_intensity,
    select_channels,
)
from vaedx.errors import ConfigError
from vaedx.io import read_raster

MR = Path(pydicom.__file__).parent / "data" / "test_files" / "MR_small.dcm"


def test_one_channel_image_stands_for_the_models_one_channel(lgg_dir: Path) -> None:
    png = next(p for p in sorted(lgg_dir.rglob("*_10.png")))
    rgb = read_raster(png, rgb="keep").array  # the LGG PNG: pre-contrast, FLAIR, post-contrast
    flair = PreprocessConfig(channels=[1])
    assert np.array_equal(select_channels(rgb, flair), rgb[1:2])
    single = rgb[1:2]  # the FLAIR plane alone, as a FLAIR DICOM or NIfTI would give it
    assert channel_mapped(1, flair) and np.array_equal(select_channels(single, flair), single)
    assert not channel_mapped(3, flair) and not channel_mapped(1, PreprocessConfig(channels=[0]))
    with pytest.raises(ConfigError, match=r"channels \[1\] requested but the image has 1 channel"):
        select_channels(single, PreprocessConfig(channels=[0, 1]))


def test_volume_range_replaces_the_images_own_statistics() -> None:
    ds = pydicom.dcmread(MR)
    x = ds.pixel_array.astype(np.float32)[None]
    cfg = PreprocessConfig()
    own = normalize_intensity(x, cfg)
    wide = normalize_intensity(x, cfg, value_range=(0.0, float(x.max()) * 2))
    assert own.max() == pytest.approx(1.0) and wide.max() == pytest.approx(0.5, abs=1e-6)
    assert apply(x, cfg)[0].shape == x.shape


def test_volume_fields_validate() -> None:
    cfg = PreprocessConfig(normalize_scope="volume", target_spacing=(1.0, 1.0))
    assert cfg.volume_steps and not PreprocessConfig().volume_steps
    with pytest.raises(ValidationError):
        PreprocessConfig(target_spacing=(0.0, 1.0))
    with pytest.raises(ValidationError):
        PreprocessConfig(normalize_scope="slice")
    with pytest.raises(ValidationError, match="unknown brain extraction 'bet2'"):
        PreprocessConfig(brain_extraction="bet2")
    assert PreprocessConfig(brain_extraction="deepbet").volume_steps


def test_context_slices_round_trip_and_need_one_channel(tmp_path: Path) -> None:
    from vaedx.data.prepare import prepare_config

    cfg = PreprocessConfig(size=64, channels=[1], context_slices=2)
    assert cfg.volume_steps and PreprocessConfig().context_slices == 0
    again = PreprocessConfig.model_validate_json(cfg.fingerprint())
    assert again == cfg and again.context_slices == 2
    assert cfg.describe_difference(PreprocessConfig(size=64, channels=[1])) == ["context_slices: 2 vs 0"]
    yml = tmp_path / "pre.yaml"
    yml.write_text("preprocess:\n  context_slices: 1\n  channels: [1]\n")
    assert prepare_config(yml).context_slices == 1
    assert prepare_config(yml, context_slices=3).context_slices == 3  # an option overrides the file
    assert PreprocessConfig(channels=[0, 1, 2], grey=True, context_slices=1).context_slices == 1
    with pytest.raises(ConfigError, match=r"context_slices: .*channels \[0, 1\] are kept: choose one"):
        prepare_config(channels=[0, 1], context_slices=1)
    with pytest.raises(ConfigError, match="context_slices"):
        prepare_config(context_slices=-1)


def test_a_single_image_has_no_neighbouring_slices() -> None:
    x = pydicom.dcmread(MR).pixel_array.astype(np.float32)[None]
    with pytest.raises(ConfigError, match="1 neighbour.* as 3 channels .*no neighbouring slices"):
        apply(x, PreprocessConfig(context_slices=1))
