"""index_source: the dispatch over every layout (the layouts themselves are tested in their own modules)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vaedx.data.index import IndexOptions
from vaedx.data.sources import index_source
from vaedx.errors import ConfigError, InputError


def test_a_missing_source_is_one_line_naming_it(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="source not found"):
        index_source(tmp_path / "nowhere")


def test_no_source_needs_a_datalist() -> None:
    with pytest.raises(ConfigError, match="--datalist"):
        index_source(None, IndexOptions())


def test_an_empty_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no images found"):
        index_source(tmp_path)
