"""The diagnosis fixtures (one tiny labelled store and a VAE trained on it), shared with the other folders
that test diagnosis."""

from diag_fixtures import _one_thread, cheng_fitted, cheng_pca, cheng_store, fitted, pca, store, vae  # noqa: F401
