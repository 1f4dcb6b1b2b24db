"""Training engine: config, beta-VAE losses, memmap batches, checkpoints, the loop and ``vaedx train``.

The package object itself is callable (``vaedx.train(store, out, ...)`` runs :func:`vaedx.api.train`),
because ``vaedx.train`` is both this subpackage and the public API function: once any submodule is
imported, Python binds the name ``vaedx.train`` to this package, so the package has to behave like the
function as well.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from vaedx.api import train

        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
