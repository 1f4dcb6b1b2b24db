"""Run the real ``vaedx`` CLI in a child process and SIGKILL it at one exact point of its output.

Why a hook on ``os.replace`` rather than a timer: every vaedx output is put in place by a rename (atomic
files, staged folders, the completion marks), so "just before X is moved onto <path>" names each step of a
command's writing exactly, and the kill lands there on every machine however fast or loaded it is. The
child kills itself with SIGKILL, as ``kill -9`` would: no handler, no cleanup, no flushing.

Run as a script: ``KILL_BEFORE=<absolute path> python kill_at.py <vaedx arguments>``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path


def run_killed(argv: Sequence[str], before: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``vaedx *argv`` in a child process, killed just before something is moved onto ``before``."""
    env = {**os.environ, "KILL_BEFORE": os.path.abspath(before), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, __file__, *map(str, argv)], env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == -signal.SIGKILL, (
        f"vaedx {' '.join(map(str, argv))} was not killed before {before} "
        f"(exit {proc.returncode}): {proc.stderr[-2000:]}"
    )
    return proc


def _arm(target: str) -> None:
    real = os.replace

    def replace(src, dst, *args, **kwargs):  # type: ignore[no-untyped-def]
        if os.path.abspath(os.fspath(dst)) == target:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(src, dst, *args, **kwargs)

    os.replace = replace  # pathlib's Path.replace calls os.replace too


if __name__ == "__main__":
    _arm(os.environ["KILL_BEFORE"])
    from vaedx.cli import main

    sys.exit(main(sys.argv[1:]))
