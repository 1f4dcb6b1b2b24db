"""vaedx: variational autoencoders for medical image anomaly detection and diagnosis."""

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """Lazy public API, so ``import vaedx`` stays fast and does not import torch.

    ``vaedx.train`` resolves to the (callable) ``vaedx.train`` package, which runs :func:`vaedx.api.train`
    when called; ``vaedx.load_model`` and ``vaedx.LoadedModel`` come from :mod:`vaedx.api`.
    """
    if name == "train":
        import importlib

        return importlib.import_module("vaedx.train")
    if name in ("load_model", "LoadedModel"):
        from vaedx import api

        return getattr(api, name)
    raise AttributeError(f"module 'vaedx' has no attribute {name!r}")
