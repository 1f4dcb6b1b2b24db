"""A real PneumoniaMNIST run for test_card.py (see tests/helpers/card_fixtures.py)."""

from card_fixtures import real_run  # noqa: F401
