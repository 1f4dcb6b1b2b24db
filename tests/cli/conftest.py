"""The diagnosis fixtures (one tiny labelled store and a VAE trained on it), shared with the other folders
that test diagnosis."""

from diag_fixtures import (  # noqa: F401
    _one_thread,
    cheng_fitted,
    cheng_fitted_knn,
    cheng_pca,
    cheng_store,
    fitted,
    fitted_knn,
    pca,
    store,
    vae,
)
