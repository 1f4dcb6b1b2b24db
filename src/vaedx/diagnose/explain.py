"""Explanations by example: the training images nearest to a case in (standardised) latent space.

Why neighbours: "this X-ray looks like these five labelled pneumonia cases" is something a clinician can
check by eye, unlike a coefficient vector. Features are standardised with statistics of the training
features (as the classifier does), so no latent dimension dominates the distance by its scale alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler

from vaedx.errors import ConfigError, InputError


class LatentNeighbours:
    """Fitted once on the training features; :meth:`query` returns row indices into them and distances."""

    def __init__(self, train_features: np.ndarray):
        x = np.asarray(train_features, dtype=np.float64)
        if x.ndim != 2 or len(x) == 0:
            raise InputError(f"training features must be a non-empty (N, F) array, got shape {x.shape}")
        self.scaler = StandardScaler().fit(x)
        self.index = NearestNeighbors(algorithm="brute").fit(self.scaler.transform(x))
        self.n = len(x)

    def query(self, features: np.ndarray, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """(indices (N, k), distances (N, k)), nearest first; k is capped at the number of training rows."""
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        q = np.asarray(features, dtype=np.float64)
        if q.ndim != 2 or q.shape[1] != self.scaler.n_features_in_:
            raise InputError(f"query features must be (N, {self.scaler.n_features_in_}), got {q.shape}")
        dist, idx = self.index.kneighbors(self.scaler.transform(q), n_neighbors=min(k, self.n))
        return idx.astype(np.int64), dist


def nearest_training(
    train_features: np.ndarray, query_features: np.ndarray, k: int = 5
) -> tuple[np.ndarray, np.ndarray]:
    """One-shot :class:`LatentNeighbours` query: (indices into the training rows, distances)."""
    return LatentNeighbours(train_features).query(query_features, k)


def describe_neighbours(
    idx: np.ndarray,
    dist: np.ndarray,
    refs: list[str],
    labels: np.ndarray | None,
    label_names: list[str],
) -> list[list[dict[str, Any]]]:
    """Per query, a JSON-ready list of {index, path, label, distance} for its neighbours."""

    def name(code: int) -> str:
        return label_names[code] if 0 <= code < len(label_names) else str(code)

    out = []
    for row_i, row_d in zip(idx, dist, strict=True):
        out.append(
            [
                {
                    "index": int(i),
                    "path": refs[i] if i < len(refs) else "",
                    "label": name(int(labels[i])) if labels is not None else None,
                    "distance": float(d),
                }
                for i, d in zip(row_i, row_d, strict=True)
            ]
        )
    return out
