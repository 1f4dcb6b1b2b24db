"""End to end: DICOM files carrying patient identifiers go through index -> prepare -> inspect, and no
identifier appears in any file written or anything printed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vaedx.cli import main


def _all_output_text(root: Path) -> str:
    chunks = []
    for p in root.rglob("*"):
        if p.is_file():
            chunks.append(p.read_bytes().decode("latin-1"))
    return "\n".join(chunks)


def test_no_patient_identifier_leaves_the_pipeline(build, tmp_path: Path, capsys) -> None:
    src = tmp_path / "dicoms" / "case01"
    src.mkdir(parents=True)
    build.root = src
    rng = np.random.default_rng(0)
    for i in range(3):
        pixels = rng.integers(0, 2000, (32, 32)).astype(np.uint16)
        build.dicom(f"slice{i}.dcm", pixels, slope=1.0, intercept=-1024.0)
    out = tmp_path / "out"
    assert main(["data", "index", str(tmp_path / "dicoms"), "-o", str(out / "manifest.csv")]) == 0
    assert main(["data", "prepare", str(out / "manifest.csv"), "-o", str(out / "store"), "--size", "16"]) == 0
    assert main(["data", "inspect", str(out / "store")]) == 0
    assert main(["data", "inspect", str(out / "store"), "--json"]) == 0
    printed = capsys.readouterr()
    written = _all_output_text(out)
    assert "slice0.dcm" in written  # the outputs are real, not empty
    for s in build.phi_strings:
        assert s not in written, f"{s!r} leaked into a written file"
        assert s not in printed.out + printed.err, f"{s!r} leaked into printed output"
