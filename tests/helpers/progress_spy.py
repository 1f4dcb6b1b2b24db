"""A fixture that records what the shared progress bar (vaedx.training.progress.task_progress) was told.

Why a spy rather than reading stderr: the bar only draws on a real terminal, and rich draws nothing on the
captured streams of CliRunner or capsys. The fixture makes stderr count as a terminal and records every
``update(done, total)`` and ``advance()`` the library loops send to a bar that is shown.
"""

from __future__ import annotations

import pytest

from vaedx.training import progress as progress_module


@pytest.fixture
def bars(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int | None, int | None]]:
    """(done, total) per update of a shown bar; ``advance()`` is recorded as (None, None)."""
    calls: list[tuple[int | None, int | None]] = []
    update, advance = progress_module.TaskProgress.update, progress_module.TaskProgress.advance

    def record_update(self, done: int, total: int | None = None) -> None:
        if self.shown:
            calls.append((done, total))
        update(self, done, total)

    def record_advance(self, steps: int = 1) -> None:
        if self.shown:
            calls.append((None, None))
        advance(self, steps)

    monkeypatch.setattr(progress_module, "on_terminal", lambda: True)
    monkeypatch.setattr(progress_module.TaskProgress, "update", record_update)
    monkeypatch.setattr(progress_module.TaskProgress, "advance", record_advance)
    return calls
