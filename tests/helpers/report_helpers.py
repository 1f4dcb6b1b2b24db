"""A small pipeline folder built with the real commands, laid out as `vaedx demo` writes it."""

from __future__ import annotations

from pathlib import Path

from lesion_stores import make_lesion_store
from vaedx.cli import main

SIZE = 16
FAST = {"widths": [8, 16], "latent_dim": 4, "batch_size": 16, "num_threads": 1}


def make_store(out: Path, n: int = 96, size: int = SIZE) -> Path:
    """Noisy blobs with lesions at random places (see lesion_stores)."""
    return make_lesion_store(out, n, size, noise=0.05, random_lesions=True, path_pattern="img{i}.png")


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
        run(["evaluate", "anomaly", "--pred", str(det), "--store", str(store), "--n-boot", "20"])
    diag = root / "diagnosis"
    run(["diagnose", "fit", "-m", str(root / "models" / "vae"), "-s", str(store), "-o", str(diag),
         "--classifiers", "logreg"])  # fmt: skip
    run(["evaluate", "diagnosis", "--diagnosis", str(diag), "--store", str(store), "--n-boot", "20"])
    return root
