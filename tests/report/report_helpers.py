"""A small pipeline folder built with the real commands, laid out as `vaedx demo` writes it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vaedx.cli import main
from vaedx.data.preprocess import PreprocessConfig
from vaedx.data.store import StoreWriter

SIZE = 16
FAST = {"widths": [8, 16], "latent_dim": 4, "batch_size": 16, "num_threads": 1}


def make_store(out: Path, n: int = 96, size: int = SIZE) -> Path:
    """Blobs; odd rows get a bright 4x4 'lesion' square (with its mask) at a random place; 4 rows/patient."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    writer = StoreWriter(out, n, (1, size, size), with_masks=True)
    for i in range(n):
        cy, cx = rng.uniform(size / 3, 2 * size / 3, 2)
        img = 0.6 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / size) + rng.uniform(0, 0.05, (size, size))
        mask = np.zeros((size, size), np.uint8)
        if i % 2:
            y0, x0 = rng.integers(2, size - 7, 2)
            mask[y0 : y0 + 4, x0 : x0 + 4] = 1
            img = np.where(mask, 1.0, img)
        split = ("train", "train", "val", "test")[(i // 2) % 4]
        writer.add(
            img[None].astype(np.float32),
            label=i % 2,
            mask=mask,
            split=split,
            path=f"img{i}.png",
            patient_id=f"p{i // 4}",
        )
    writer.finish(["normal", "lesion"], PreprocessConfig(size=(size, size)))
    return out


def run(argv: list[str]) -> None:
    code = main(argv)
    assert code == 0, f"vaedx {' '.join(argv)} exited with {code}"


def make_pipeline(root: Path) -> Path:
    """store/, models/{vae,pca}/, detect/{vae,pca}/ + evaluation.json, diagnosis/ + evaluation_test.json."""
    import vaedx

    store = make_store(root / "store")
    vaedx.train(store, root / "models" / "vae", epochs=3, label_filter=["normal"], **FAST)
    vaedx.train(store, root / "models" / "pca", kind="pca", latent_dim=4, label_filter=["normal"])
    for m in ("vae", "pca"):
        det = root / "detect" / m
        model = str(root / "models" / m)
        scorers = ["--scorer", "residual", "--scorer", "ssim"]
        run(["detect", "-m", model, "-s", str(store), "-o", str(det), *scorers, "--max-overlays", "0", "-q"])
        run(["evaluate", "anomaly", "--pred", str(det), "--truth", str(store), "--n-boot", "20"])
    diag = root / "diagnosis"
    run(["diagnose", "fit", "-m", str(root / "models" / "vae"), "-s", str(store), "-o", str(diag),
         "--classifiers", "logreg"])  # fmt: skip
    run(["evaluate", "diagnosis", "--model", str(diag), "--truth", str(store), "--n-boot", "20"])
    return root
