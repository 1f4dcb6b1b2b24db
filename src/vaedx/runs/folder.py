"""``RunFolder``: the layout of one training run folder, with its one checkpoint writer and reader.

Layout::

    <run>/best/, <run>/last/   checkpoint folders (see :mod:`vaedx.runs.checkpoint`)
    <run>/metrics.csv          one row per epoch
    <run>/thresholds.json      saved anomaly calibration (``vaedx detect --save-calibration``)
    <run>/finetune.json        history of an encoder fine-tuned for diagnosis

Why one writer: the torch training loop, PCA fitting and encoder fine-tuning all produce checkpoints that
``load_model`` must read alike; writing config.json and a state.json whose sha256 entries cover the
weights in one place keeps the three from drifting (a missing checksum would let a truncated file load).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vaedx.runs import checkpoint as ck

BEST, LAST = "best", "last"
METRICS_FILE = "metrics.csv"
THRESHOLDS_FILE = "thresholds.json"
FINETUNE_FILE = "finetune.json"
STATE_FORMAT = "vaedx-state"


@dataclass(frozen=True)
class RunFolder:
    """One run folder; ``RunFolder.of`` also accepts one of its checkpoint folders."""

    root: Path

    @classmethod
    def of(cls, path: str | Path) -> RunFolder:
        """The run folder of ``path``: the parent of a best/ or last/ checkpoint folder, else ``path``."""
        p = Path(path)
        return cls(p.parent if p.name in (BEST, LAST) else p)

    @property
    def best(self) -> Path:
        return self.root / BEST

    @property
    def last(self) -> Path:
        return self.root / LAST

    @property
    def metrics(self) -> Path:
        return self.root / METRICS_FILE

    @property
    def thresholds(self) -> Path:
        return self.root / THRESHOLDS_FILE

    @property
    def finetune(self) -> Path:
        return self.root / FINETUNE_FILE

    # ------------------------------------------------------------------------------------------ writing
    def write_checkpoint(
        self,
        name: str,
        write_weights: Callable[[Path], object],
        config: dict[str, Any],
        state: dict[str, Any],
        hashed: Sequence[str] = (ck.MODEL_FILE,),
    ) -> Path:
        """Write ``<run>/<name>/`` atomically: ``write_weights(tmp)`` writes the tensor files, then
        config.json and state.json (``state`` plus the format and the sha256 of every ``hashed`` file)."""

        def write(tmp: Path) -> None:
            write_weights(tmp)
            ck.write_json(tmp / ck.CONFIG_FILE, config)
            body = {"format": STATE_FORMAT, "format_version": ck.RUN_FORMAT_VERSION, **state}
            ck.write_json(tmp / ck.STATE_FILE, {**body, "sha256": {f: ck.sha256(tmp / f) for f in hashed}})

        self.root.mkdir(parents=True, exist_ok=True)
        return ck.write_folder(self.root / name, write)

    def copy_checkpoint(self, src: str = LAST, dst: str = BEST) -> Path:
        """``<run>/<dst>/`` becomes a copy of ``<run>/<src>/`` (the best epoch so far is the last one)."""
        return ck.copy_folder(self.root / src, self.root / dst)

    # ------------------------------------------------------------------------------------------ reading
    def checkpoint(self, prefer: str = BEST) -> Path:
        """The checkpoint folder to load: ``prefer`` (best/ or last/), else the other one."""
        return ck.resolve_checkpoint(self.root, prefer)

    def read_config(self, prefer: str = BEST) -> dict[str, Any]:
        """config.json of the preferred checkpoint, refusing other formats with a line naming the file."""
        return ck.read_run_config(self.checkpoint(prefer) / ck.CONFIG_FILE)

    def read_state(self, prefer: str = BEST) -> dict[str, Any]:
        return ck.read_json(self.checkpoint(prefer) / ck.STATE_FILE)
