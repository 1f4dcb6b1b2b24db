"""Tiny training stores, shared by the training, run-folder and API tests."""

from card_fixtures import real_run  # noqa: F401  (test_model_card.py: a real PneumoniaMNIST run)
from train_fixtures import tiny_store  # noqa: F401
