"""A real PneumoniaMNIST run for test_card.py (see tests/helpers/card_fixtures.py) and the diagnosis
fixtures for test_diagnosis.py: the tiny binary store with its VAE, and three real Cheng tumour types."""

from card_fixtures import real_run  # noqa: F401
from diag_fixtures import (  # noqa: F401
    _one_thread,
    cheng_fitted,
    cheng_fitted_knn,
    cheng_pca,
    cheng_store,
    fitted,
    fitted_knn,
    store,
    vae,
)
