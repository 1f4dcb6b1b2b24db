"""read_any over the whole catalogue of pydicom's bundled test files, with the decoder plugins installed.

Every file pydicom itself decodes must load; every other one (non-image objects, deliberately broken files,
syntaxes no installed plugin decodes, files that are not DICOM) must give one line naming it, and nothing
else may come out.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pydicom
import pytest

from vaedx.errors import VaedxError
from vaedx.io import read_any

ROOT = Path(pydicom.__file__).parent / "data" / "test_files"
FILES = sorted(p for p in ROOT.rglob("*") if p.is_file() and not p.name.startswith("."))


def _pydicom_decodes(f: Path) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pydicom.dcmread(f, force=True).pixel_array  # noqa: B018  (decoding is the check)
        return True
    except Exception:
        return False


def test_the_catalogue_is_there() -> None:
    assert len(FILES) > 100, f"pydicom's bundled test files are missing ({ROOT})"


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(ROOT)) for p in FILES])
def test_every_file_pydicom_decodes_loads_and_the_rest_is_one_line(path: Path) -> None:
    decodes = _pydicom_decodes(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            images = read_any(path)
    except VaedxError as e:
        text = str(e)
        assert not decodes, f"pydicom decodes {path.name} but vaedx refused it: {text}"
        assert "\n" not in text and path.name in text, text
        return
    assert decodes, f"vaedx read {path.name}, which pydicom itself cannot decode"
    assert images and all(im.array.ndim == 3 for im in images)
