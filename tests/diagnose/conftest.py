"""The diagnosis fixtures (one tiny labelled store and a VAE trained on it), shared with the other folders
that test diagnosis."""

from card_fixtures import real_run  # noqa: F401  (test_card.py: a real PneumoniaMNIST run)
from diag_fixtures import _one_thread, fitted, pca, store, vae  # noqa: F401
