"""The readers' common boundary: damage nobody foresaw still becomes one line naming the file."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import pydicom
import pytest

from vaedx.errors import ConfigError, InputError
from vaedx.io import read_any
from vaedx.io._files import read_guarded
from vaedx.io.volume_source import read_volume

ROOT = Path(__file__).resolve().parents[2]
MR = Path(pydicom.__file__).parent / "data" / "test_files" / "MR_small.dcm"
ANAT = Path(nib.__file__).parent / "tests" / "data" / "anatomical.nii"


def _one_line(e: pytest.ExceptionInfo, path: Path) -> str:
    text = str(e.value)
    assert "\n" not in text and str(path) in text, text
    return text


def test_a_corrupted_transfer_syntax_uid_is_one_line(tmp_path: Path) -> None:
    raw = bytearray(MR.read_bytes())
    at = raw.find(b"1.2.840.10008.1.2.1")  # the file meta's TransferSyntaxUID
    raw[at : at + 4] = b"\xff\xff\xff\x7f"
    bad = tmp_path / "syntax.dcm"
    bad.write_bytes(bytes(raw))
    with pytest.raises(InputError) as e:
        read_any(bad)
    assert "cannot read this DICOM file" in _one_line(e, bad)


def test_a_text_in_a_number_field_is_one_line(tmp_path: Path) -> None:
    raw = bytearray(MR.read_bytes())
    at = raw.find(b"0.3125")  # PixelSpacing's first value in MR_small.dcm
    assert at > 0
    raw[at : at + 6] = b"0.31(5"
    bad = tmp_path / "spacing.dcm"
    bad.write_bytes(bytes(raw))
    with pytest.raises(InputError) as e:
        read_any(bad)
    assert "cannot read this DICOM file" in _one_line(e, bad)


def test_an_affine_nibabel_cannot_decompose_is_one_line_for_both_routes(tmp_path: Path) -> None:
    """anatomical.nii (big-endian) with its sform's z row zeroed and the sform made the one in force."""
    raw = bytearray(ANAT.read_bytes())
    raw[252:256] = struct.pack(">hh", 0, 1)  # qform_code 0, sform_code 1
    raw[312:328] = struct.pack(">4f", 0, 0, 0, 0)  # srow_z
    bad = tmp_path / "flat.nii"
    bad.write_bytes(bytes(raw))
    for reader in (read_any, read_volume):
        with pytest.raises(InputError) as e:
            reader(bad)
        assert "cannot read this NIfTI file" in _one_line(e, bad)


def test_config_errors_and_memory_errors_are_not_disguised() -> None:
    def wrong_option(_p: Path) -> None:
        raise ConfigError("axis must be 0, 1 or 2")

    def no_memory(_p: Path) -> None:
        raise MemoryError

    with pytest.raises(ConfigError):
        read_guarded("NIfTI", ANAT, wrong_option)
    with pytest.raises(MemoryError):
        read_guarded("NIfTI", ANAT, no_memory)


def test_a_seeded_fuzz_round_finds_nothing_but_one_line_errors() -> None:
    """benchmarks/fuzz.py on real seed files (mutated headers, truncation, huge dimensions)."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    r = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "fuzz.py"), "--cases", "400", "--seed", "0", "--json"],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["cases"] == 400 and len(out["seeds"]) >= 5
    assert out["distinct_failures"] == 0, out["failures"]
