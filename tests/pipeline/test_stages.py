"""The demo's stages: what the status line says while a model trains."""

from __future__ import annotations

from pathlib import Path

from train_fixtures import tiny_store  # noqa: F401  (the store fixture)
from vaedx.pipeline.stages import Settings, train_model


def test_train_status_counts_epochs_from_one(tiny_store: Path, tmp_path: Path) -> None:  # noqa: F811
    """Epochs count from 1 in the loop, so the first epoch reads 1/2 and the last 2/2, never 3/2."""
    said: list[str] = []
    s = Settings.make(quick=True, epochs=2, seed=0, threads=1)
    run = train_model(tiny_store, tmp_path / "vae", "vae", s, said.append, widths=[8, 16], latent_dim=4)
    assert (run / "config.json").exists()
    assert said[0] == "vae: epoch 1/2" and said[-1] == "vae: epoch 2/2"
    assert set(said) == {"vae: epoch 1/2", "vae: epoch 2/2"}
