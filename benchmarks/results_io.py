"""The JSON results that benchmark sections write as they go (atomically) and the table printers read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def save(out: Path, name: str, doc: Any) -> None:
    (out / "results").mkdir(parents=True, exist_ok=True)
    tmp = out / "results" / f"{name}.json.tmp"
    tmp.write_text(json.dumps(doc, indent=1))
    tmp.replace(out / "results" / f"{name}.json")


def load(out: Path, name: str) -> Any:
    p = out / "results" / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else None
