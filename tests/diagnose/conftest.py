"""The diagnosis fixtures (one tiny labelled store and a VAE trained on it, and three real Cheng tumour
types with a PCA encoder), shared with the other folders that test diagnosis."""

from card_fixtures import real_run  # noqa: F401  (test_card.py: a real PneumoniaMNIST run)
from diag_fixtures import _one_thread, cheng_fitted, cheng_pca, cheng_store, fitted, pca, store, vae  # noqa: F401
