"""The notebook API: ``vaedx.train(store, out, **options)`` and ``vaedx.load_model(path)``.

A facade over the layers below it, beside the CLI at the top: nothing inside vaedx imports it.
"""

from __future__ import annotations

from vaedx.runs.loaded import LoadedModel, load_model
from vaedx.training.engine import train

__all__ = ["LoadedModel", "load_model", "train"]
