"""Tiny training stores, shared by the training, run-folder and API tests."""

from train_fixtures import tiny_store  # noqa: F401
