"""One option vocabulary for every `vaedx` command: --out, --store, --model, --threads, --device, --overwrite.

Why through the click commands: the spelling users type is the contract, so these tests read the options
each command really declares and run the commands the way a user does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import typer

from vaedx.cli import app, main
from vaedx.cli.options import check_device, split_list
from vaedx.errors import ConfigError


def _command(path: tuple[str, ...]):
    cmd = typer.main.get_command(app)
    for name in path:
        cmd = cmd.commands[name]  # type: ignore[attr-defined]
    return cmd.real() if hasattr(cmd, "real") else cmd


def _flags(path: tuple[str, ...], hidden: bool = False) -> set[str]:
    cmd = _command(path)
    return {
        o
        for p in cmd.params
        if hidden or not getattr(p, "hidden", False)
        for o in (*p.opts, *p.secondary_opts)
    }


WRITERS = [
    ("train",), ("detect",), ("export",), ("report",), ("demo",),
    ("data", "index"), ("data", "split"), ("data", "prepare"),
    ("diagnose", "fit"), ("diagnose", "finetune"), ("diagnose", "predict"), ("diagnose", "study"),
    ("evaluate", "anomaly"), ("evaluate", "compare"), ("evaluate", "diagnosis"),
    ("evaluate", "compare-diagnosis"),
]  # fmt: skip
NETWORKS = [
    ("train",), ("detect",), ("serve",), ("export",),
    ("diagnose", "fit"), ("diagnose", "finetune"), ("diagnose", "predict"), ("diagnose", "study"),
    ("evaluate", "diagnosis"), ("evaluate", "compare-diagnosis"),
]  # fmt: skip
SETTINGS = [
    ("train",),
    ("detect",),
    ("serve",),
    ("data", "prepare"),
    ("diagnose", "fit"),
    ("diagnose", "finetune"),
]


@pytest.mark.parametrize("path", WRITERS, ids=" ".join)
def test_every_writer_takes_out_and_overwrite(path: tuple[str, ...]) -> None:
    flags = _flags(path)
    assert {"--out", "-o", "--overwrite"} <= flags
    assert "--output" not in flags  # the old spelling is hidden


@pytest.mark.parametrize("path", NETWORKS, ids=" ".join)
def test_every_network_command_takes_device_and_threads(path: tuple[str, ...]) -> None:
    assert {"--device", "--threads"} <= _flags(path)
    assert "--num-threads" not in _flags(path)


@pytest.mark.parametrize("path", SETTINGS, ids=" ".join)
def test_commands_with_settings_take_config_and_print_config(path: tuple[str, ...]) -> None:
    assert {"--config", "--print-config"} <= _flags(path)


@pytest.mark.parametrize(
    "path",
    [("train",), ("detect",), ("diagnose", "fit"), ("evaluate", "anomaly"),
     ("evaluate", "diagnosis"), ("evaluate", "compare-diagnosis"), ("diagnose", "predict"),
     ("diagnose", "study"), ("report",)],
    ids=" ".join,
)  # fmt: skip
def test_a_tensor_store_is_always_store_s(path: tuple[str, ...]) -> None:
    assert {"--store", "-s"} <= _flags(path)
    assert "--truth" not in _flags(path)


def test_model_is_a_model_run_and_diagnosis_a_diagnosis_folder() -> None:
    for path in [("detect",), ("serve",), ("export",), ("diagnose", "fit"), ("diagnose", "study")]:
        assert {"--model", "-m"} <= _flags(path)
    for path in [("serve",), ("diagnose", "predict"), ("evaluate", "diagnosis"), ("report",)]:
        assert "--diagnosis" in _flags(path)
    for path in [("diagnose", "predict"), ("evaluate", "diagnosis")]:
        assert "--model" not in _flags(path) and "--model" in _flags(path, hidden=True)


def test_scorer_is_one_repeatable_option_that_also_takes_commas() -> None:
    assert "--scorer" in _flags(("detect",)) and "--scorer" in _flags(("diagnose", "fit"))
    assert "--scorers" in _flags(("detect",), hidden=True) - _flags(("detect",))
    assert split_list(["a", "b,c", " d , "]) == ["a", "b", "c", "d"]


def _npz(path: Path) -> Path:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 6), ("val", 4), ("test", 4)):
        arrays[f"{split}_images"] = rng.integers(0, 255, (n, 8, 8), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2).reshape(n, 1)
    np.savez(path, **arrays)
    return path


def test_old_spellings_still_work_and_warn_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _npz(tmp_path / "x.npz")
    assert main(["data", "index", str(src), "--output", str(tmp_path / "m.csv"), "--no-split"]) == 0
    err = capsys.readouterr().err
    assert "--output is deprecated; use --out" in err
    assert "--split/--no-split is deprecated" in err
    assert "split" in (tmp_path / "m.csv").read_text().splitlines()[0]
    assert main(["data", "prepare", str(src), "--output", str(tmp_path / "s")]) == 0
    assert (tmp_path / "s" / "store.json").is_file()
    assert capsys.readouterr().err.count("deprecated") == 1


def test_writing_twice_needs_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _npz(tmp_path / "x.npz")
    for args in (["data", "index", str(src), "-o", str(tmp_path / "m.csv")],
                 ["data", "prepare", str(src), "-o", str(tmp_path / "s")]):  # fmt: skip
        assert main(args) == 0
        capsys.readouterr()
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "pass --overwrite to replace it" in err
        assert main([*args, "--overwrite"]) == 0


def test_a_missing_required_option_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "index", str(_npz(tmp_path / "x.npz"))]) == 2
    assert capsys.readouterr().err.strip().endswith("missing option --out")


def test_device_is_checked_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    assert check_device("cpu") == "cpu"
    with pytest.raises(ConfigError, match="cpu, cuda, cuda:N or auto"):
        check_device("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert check_device("auto") == "cpu"
    with pytest.raises(ConfigError, match="CUDA is not available"):
        check_device("cuda:0")


def test_detect_refuses_a_cuda_device_without_cuda(
    vae, store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = [
        "detect",
        "-m",
        str(vae.path),
        "-s",
        str(store.root),
        "-o",
        str(tmp_path / "d"),
        "--device",
        "cuda",
    ]
    assert main(args) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_detect_print_config_feeds_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["detect", "-m", "run", "-s", "st", "-o", "out", "--scorer", "residual,elbo",
            "--target-specificity", "0.9", "--threads", "1"]  # fmt: skip
    assert main([*args, "--print-config"]) == 0
    first = capsys.readouterr().out
    (tmp_path / "d.yaml").write_text(first)
    assert main(["detect", "--config", str(tmp_path / "d.yaml"), "--print-config"]) == 0
    assert capsys.readouterr().out == first
    assert "target_specificity: 0.9" in first and "- elbo" in first
    # an option typed on the command line wins over the file
    assert main(["detect", "--config", str(tmp_path / "d.yaml"), "--split", "val", "--print-config"]) == 0
    assert "split: val" in capsys.readouterr().out


def test_unknown_config_keys_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "d.yaml").write_text("scorerz: [residual]\n")
    assert main(["detect", "--config", str(tmp_path / "d.yaml"), "--print-config"]) == 2
    assert "unknown setting(s) scorerz" in capsys.readouterr().err


def test_data_prepare_print_config_feeds_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "prepare", "x.npz", "--size", "16", "--grey", "--print-config"]) == 0
    first = capsys.readouterr().out
    (tmp_path / "p.yaml").write_text(first)
    assert main(["data", "prepare", "x.npz", "--config", str(tmp_path / "p.yaml"), "--print-config"]) == 0
    assert capsys.readouterr().out == first


def test_model_as_a_diagnosis_folder_is_the_old_spelling(tmp_path: Path, capsys) -> None:
    for cmd in (["evaluate", "diagnosis", "--truth", str(tmp_path)], ["diagnose", "predict", "--store", "s"]):
        assert main([*cmd, "--model", str(tmp_path / "nope")]) == 2
        err = capsys.readouterr().err
        assert "--model (a diagnosis folder) is deprecated; use --diagnosis" in err
        assert "nope" in err.splitlines()[-1]
