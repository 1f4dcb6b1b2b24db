"""vaedx: variational autoencoders for medical image anomaly detection and diagnosis."""

from vaedx.version import __version__ as __version__

_API = (
    "train", "load_model", "LoadedModel", "detect", "read_volume", "prepare_volume", "PreparedVolume",
    "Volume", "volume_metrics", "Model", "Scores", "Diagnosis", "load_diagnosis", "prepare", "fit_diagnosis",
    "finetune",
)  # fmt: skip


def __getattr__(name: str) -> object:
    """Lazy public API, so ``import vaedx`` stays fast and does not import torch.

    The names in ``_API`` are the functions and classes of :mod:`vaedx.api` (the training code itself
    lives in the ``vaedx.training`` package, so the name ``vaedx.train`` is free for the function).
    """
    if name in _API:
        from vaedx import api

        return getattr(api, name)
    raise AttributeError(f"module 'vaedx' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
