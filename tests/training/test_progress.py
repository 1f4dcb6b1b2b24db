"""The shared progress bar of the long commands: shown only on a terminal and never with --quiet; the
``update(done, total)`` callback the library loops call moves it."""

from __future__ import annotations

import pytest

from vaedx.training import progress
from vaedx.training.progress import task_progress


def test_no_bar_off_a_terminal_or_when_quiet(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    with task_progress("encoding", 4) as bar:  # pytest's stderr is not a terminal
        assert not bar.shown
        bar.update(2, 4)  # the callback is safe to call either way
        bar.advance()
    monkeypatch.setattr(progress, "on_terminal", lambda: True)
    with task_progress("encoding", 4, quiet=True) as bar:
        assert not bar.shown
    assert capsys.readouterr().err == ""


def test_update_sets_done_and_total(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "on_terminal", lambda: True)
    with task_progress("prepare") as bar:  # no total known up front: the first update brings it
        assert bar.shown
        task = bar.progress.tasks[0]
        assert task.total is None
        bar.update(3, 10)
        assert (task.completed, task.total) == (3, 10)
        bar.update(10, 10)
        bar.advance()
        bar.describe("report: latent")
        assert task.completed == 11 and task.description == "report: latent"
