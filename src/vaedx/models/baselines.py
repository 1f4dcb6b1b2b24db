"""PCA baseline: the linear model every VAE result should be compared against.

Why PCA: on small, well-aligned medical images a linear subspace is a strong, cheap reconstruction model;
if a VAE does not beat it the VAE is not earning its complexity. Encoding and decoding are two matrix
products, kept as plain numpy arrays so saving needs no pickle (safetensors + JSON).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from vaedx.atomic import atomic_write, atomic_write_json
from vaedx.errors import InputError, ModelMismatchError

PCA_FORMAT = "vaedx-pca-1"
_INCREMENTAL_BYTES = 1 << 30  # above ~1 GB of pixels, fit in chunks instead of loading everything


class PCABaseline:
    """PCA on flattened pixels; numpy in/out, torch in/out when given tensors (same interface as the VAEs)."""

    def __init__(self, latent_dim: int, image_shape: tuple[int, int, int] | None = None):
        self.latent_dim = latent_dim
        self.image_shape = tuple(image_shape) if image_shape is not None else None
        self.components: np.ndarray | None = None  # (k, D)
        self.mean: np.ndarray | None = None  # (D,)
        self.explained_variance: np.ndarray | None = None  # (k,)

    # -- fitting ----------------------------------------------------------------------------------------
    def fit(self, x: Any, batch_size: int = 1024) -> PCABaseline:
        """Fit on (N, C, H, W) images: an array, a tensor, or any lazily sliced (N, C, H, W) row view.

        Inputs larger than ~1 GB are fitted in chunks with IncrementalPCA, so a memory-mapped store is
        never loaded whole.
        """
        from sklearn.decomposition import PCA, IncrementalPCA

        if isinstance(x, torch.Tensor):
            x = _as_numpy(x)
        if len(x.shape) != 4 or len(x) < 2:
            raise InputError(f"PCA needs at least 2 images of shape (N, C, H, W), got {x.shape}")
        self.image_shape = tuple(int(s) for s in x.shape[1:])
        n, d = len(x), int(np.prod(x.shape[1:]))
        k = min(self.latent_dim, n, d)
        if n * d * 4 <= _INCREMENTAL_BYTES:
            pca: Any = PCA(n_components=k, svd_solver="full" if d <= 4096 else "auto", random_state=0)
            pca.fit(np.asarray(x[0:n], dtype=np.float32).reshape(n, d))
        else:
            bs = max(batch_size, k)
            starts = list(range(0, n, bs))
            if len(starts) > 1 and n - starts[-1] < k:  # every partial_fit needs >= k rows
                starts.pop()
            pca = IncrementalPCA(n_components=k)
            for s, e in zip(starts, [*starts[1:], n], strict=True):
                pca.partial_fit(np.asarray(x[s:e], dtype=np.float32).reshape(e - s, d))
        self.components = np.ascontiguousarray(pca.components_, dtype=np.float32)
        self.mean = np.ascontiguousarray(pca.mean_, dtype=np.float32)
        self.explained_variance = np.ascontiguousarray(pca.explained_variance_, dtype=np.float32)
        return self

    def _fitted(self) -> tuple[np.ndarray, np.ndarray]:
        if self.components is None or self.mean is None:
            raise InputError("PCA baseline is not fitted yet")
        return self.components, self.mean

    # -- the reconstruction interface -----------------------------------------------------------------
    def encode(self, x: np.ndarray | torch.Tensor) -> tuple[Any, None]:
        """(z, None): projection onto the principal components; None because PCA has no posterior variance."""
        comp, mean = self._fitted()
        xa = _as_numpy(x)
        if self.image_shape is not None and tuple(xa.shape[1:]) != self.image_shape:
            raise ModelMismatchError(f"PCA model expects (N, {self.image_shape}) inputs, got {xa.shape}")
        z = (xa.reshape(len(xa), -1).astype(np.float32) - mean) @ comp.T
        return _like(z, x), None

    def decode(self, z: np.ndarray | torch.Tensor) -> Any:
        comp, mean = self._fitted()
        xr = _as_numpy(z).astype(np.float32) @ comp + mean
        return _like(xr.reshape(len(xr), *self.image_shape), z)  # type: ignore[misc]

    def reconstruct(self, x: np.ndarray | torch.Tensor) -> Any:
        return self.decode(self.encode(x)[0])

    def eval(self) -> PCABaseline:
        """No-op, so code written for torch models (model.eval().to(dev)) also accepts the baseline."""
        return self

    def to(self, *args: Any, **kwargs: Any) -> PCABaseline:
        return self

    # -- persistence ------------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write ``model.safetensors`` (arrays) and ``pca.json`` (shape, format) into ``directory``."""
        comp, mean = self._fitted()
        d = Path(directory)
        arrays = {"components": comp, "mean": mean, "explained_variance": self.explained_variance}
        # safetensors writes raw buffers: a Fortran-ordered array would be saved transposed
        arrays = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in arrays.items()}
        meta = {"format": PCA_FORMAT}
        atomic_write(d / "model.safetensors", lambda p: save_file(arrays, str(p), metadata=meta))
        shape = list(self.image_shape or ())
        atomic_write_json(d / "pca.json", {**meta, "latent_dim": self.latent_dim, "image_shape": shape})
        return d

    @classmethod
    def load(cls, directory: str | Path) -> PCABaseline:
        d = Path(directory)
        meta_path, arr_path = d / "pca.json", d / "model.safetensors"
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as e:
            raise InputError(f"cannot read PCA config ({e})", meta_path) from None
        if meta.get("format") != PCA_FORMAT:
            raise InputError(f"unsupported PCA format {meta.get('format')!r} (need {PCA_FORMAT})", meta_path)
        try:
            arrays = load_file(str(arr_path))
        except (OSError, SafetensorError, ValueError) as e:
            raise InputError(f"damaged or truncated safetensors file ({e})", arr_path) from None
        m = cls(int(meta["latent_dim"]), tuple(meta["image_shape"]))  # type: ignore[arg-type]
        try:
            m.components, m.mean = arrays["components"], arrays["mean"]
            m.explained_variance = arrays["explained_variance"]
        except KeyError as e:
            raise InputError(f"PCA weights lack {e}", arr_path) from None
        if m.components.shape[1] != m.mean.shape[0] or m.mean.shape[0] != int(np.prod(m.image_shape)):
            raise InputError("PCA arrays do not match the recorded image shape", arr_path)
        return m


def _as_numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    return x.detach().cpu().float().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _like(a: np.ndarray, ref: np.ndarray | torch.Tensor) -> Any:
    """Return ``a`` as the same kind of array as the input (torch tensors keep their device)."""
    return torch.from_numpy(np.ascontiguousarray(a)).to(ref.device) if isinstance(ref, torch.Tensor) else a
