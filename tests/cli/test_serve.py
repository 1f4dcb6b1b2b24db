"""`vaedx serve`: a network address needs a token (or --insecure); the token reaches the app, not the log."""

from __future__ import annotations

from pathlib import Path

import pytest

from train_helpers import FAST, make_store
from vaedx.cli import main

TOKEN = "cli-token-0123456789abcdef"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import vaedx

    root = tmp_path_factory.mktemp("serve_cli")
    make_store(root / "store")
    vaedx.train(root / "store", root / "run", epochs=1, **FAST)
    return root / "run"


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """uvicorn.run replaced by a recorder: the command builds the app and stops there."""
    import uvicorn

    calls: list[dict] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append({"app": app, **kw}))
    monkeypatch.delenv("VAEDX_SERVE_TOKEN", raising=False)
    return calls


def _middleware(app) -> list[str]:
    return [m.cls.__name__ for m in app.user_middleware]


def test_network_host_without_token_is_refused_in_one_line(run: Path, served: list, capsys) -> None:
    code = main(["serve", "--model", str(run), "--host", "0.0.0.0"])
    err = capsys.readouterr().err
    assert code == 2 and not served
    assert "reachable from the network" in err and "--token" in err and "Traceback" not in err


def test_insecure_serves_with_a_warning(run: Path, served: list, capsys) -> None:
    assert main(["serve", "--model", str(run), "--host", "0.0.0.0", "--insecure"]) in (0, None)
    assert served and served[0]["host"] == "0.0.0.0" and "TokenAuth" not in _middleware(served[0]["app"])
    assert "without authentication" in capsys.readouterr().err


def test_token_from_the_environment_guards_the_app(
    run: Path, served: list, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VAEDX_SERVE_TOKEN", TOKEN)
    assert main(["serve", "--model", str(run), "--host", "0.0.0.0"]) in (0, None)
    assert "TokenAuth" in _middleware(served[0]["app"])
    assert TOKEN not in capsys.readouterr().err


def test_short_token_and_print_config(run: Path, served: list, capsys) -> None:
    assert main(["serve", "--model", str(run), "--token", "short"]) == 2
    assert "at least 16 characters" in capsys.readouterr().err
    main(["serve", "--model", str(run), "--token", TOKEN, "--print-config"])
    out = capsys.readouterr()
    assert TOKEN not in out.out + out.err and not served


def test_loopback_needs_no_token(run: Path, served: list) -> None:
    assert main(["serve", "--model", str(run)]) in (0, None)
    assert served[0]["host"] == "127.0.0.1" and "TokenAuth" not in _middleware(served[0]["app"])


def test_workers_queue_and_threads_per_worker(run: Path, served: list) -> None:
    import torch

    before = torch.get_num_threads()
    try:
        assert main(["serve", "--model", str(run), "--workers", "2", "--threads", "4"]) in (0, None)
        gate = served[0]["app"].state.gate
        assert (gate.workers, gate.queue) == (2, 4)  # queue defaults to 2 x workers
        assert torch.get_num_threads() == 2  # --threads shared out: 4 / 2 per worker
        assert main(["serve", "--model", str(run), "--workers", "3", "--queue", "0", "--threads", "2"]) in (
            0, None,
        )  # fmt: skip
        gate = served[1]["app"].state.gate
        assert (gate.workers, gate.queue) == (3, 0) and torch.get_num_threads() == 1  # at least one each
    finally:
        torch.set_num_threads(before)


def test_zero_workers_is_refused(run: Path, served: list, capsys) -> None:
    assert main(["serve", "--model", str(run), "--workers", "0"]) == 2 and not served
    assert "--workers" in capsys.readouterr().err
