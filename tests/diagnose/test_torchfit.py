"""fit_inputs: the arguments every torch classifier trainer takes, checked once for all of them."""

from __future__ import annotations

import pytest

from vaedx.data.augment import AugmentConfig
from vaedx.data.store import TensorStore
from vaedx.diagnose.semi_train import train_semi
from vaedx.diagnose.supervised import train_supervised
from vaedx.diagnose.torchfit import fit_inputs
from vaedx.errors import ConfigError


def test_a_store_folder_is_opened_and_the_augmentation_built(store: TensorStore) -> None:
    st, device, aug = fit_inputs(store.root, 1, 8, "cpu", "onecycle", True)
    assert isinstance(st, TensorStore) and st.root == store.root and len(st) == len(store)
    assert device == "cpu" and isinstance(aug, AugmentConfig)
    assert fit_inputs(store, 1, 8, "cpu", "none", None)[0] is store
    assert fit_inputs(store, 1, 8, "cpu", "none", None)[2] is None


@pytest.mark.parametrize("trainer", [train_semi, train_supervised])
@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"epochs": 0}, "epochs and batch_size must be >= 1"),
        ({"batch_size": 0}, "epochs and batch_size must be >= 1"),
        ({"schedule": "cosine"}, "unknown schedule 'cosine'; choose from none, onecycle"),
    ],
)
def test_both_trainers_refuse_bad_arguments_alike(store: TensorStore, trainer, kwargs, problem) -> None:
    with pytest.raises(ConfigError, match=problem):
        trainer(store, **kwargs)
