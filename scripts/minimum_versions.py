"""Write pip constraints that pin every dependency of pyproject.toml to its declared minimum.

A ``>=`` bound that nobody installs is a guess; scripts/test_minimum.sh installs these pins and runs the
tests, so the bound in pyproject.toml is the oldest release vaedx is known to work with.

The declared bound may name no release (``tifffile>=2023.1``: the releases are 2023.1.23, ...), so each
pin is the oldest release pip can install here that satisfies the whole requirement, asked of pip's own
index (``pip index versions``). torch is left out: the caller pins it (the machine's CPU build).

Usage: python scripts/minimum_versions.py OUT.txt [EXTRA ...]   (base dependencies plus the named extras)
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import InvalidVersion, Version

ROOT = Path(__file__).resolve().parents[1]
SKIP = {"torch"}


def requirements(extras: list[str]) -> list[Requirement]:
    """The base dependencies and those of ``extras``, one per distribution (all bounds of a name merged)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    optional = project.get("optional-dependencies", {})
    unknown = [e for e in extras if e not in optional]
    if unknown:
        raise SystemExit(f"pyproject.toml: no extra named {', '.join(unknown)}")
    merged: dict[str, Requirement] = {}
    for text in [*project["dependencies"], *(r for e in extras for r in optional[e])]:
        req = Requirement(text)
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        if name in SKIP:
            continue
        if name in merged:
            merged[name].specifier &= req.specifier
        else:
            merged[name] = req
    return list(merged.values())


def available(name: str) -> list[Version]:
    """Releases of ``name`` that pip can install for this Python, as its configured indexes list them."""
    out = subprocess.run(
        [sys.executable, "-m", "pip", "index", "versions", name],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    line = next((x for x in out.stdout.splitlines() if x.startswith("Available versions:")), None)
    if line is None:
        raise SystemExit(f"pip index versions {name}: no releases found ({out.stderr.strip()[-200:]})")
    versions = []
    for v in line.split(":", 1)[1].split(","):
        try:
            versions.append(Version(v.strip()))
        except InvalidVersion:
            continue
    return versions


def minimum(req: Requirement) -> Version:
    """The oldest final release that satisfies ``req``; a requirement with no lower bound is refused."""
    if not any(s.operator in (">=", "==", "~=", ">") for s in req.specifier):
        raise SystemExit(f"pyproject.toml: {req} has no lower bound; declare the oldest version that works")
    ok = [v for v in available(req.name) if not v.is_prerelease and v in req.specifier]
    if not ok:
        raise SystemExit(f"pyproject.toml: no release of {req.name} satisfies {req}")
    return min(ok)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    out, extras = Path(argv[0]), argv[1:]
    lines = [f"# oldest releases allowed by pyproject.toml (base + {', '.join(extras) or 'no extras'})"]
    for req in sorted(requirements(extras), key=lambda r: r.name.lower()):
        lines.append(f"{req.name}=={minimum(req)}  # {req}")
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
