"""Shared fixtures: tiny, fast runs on real digits data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

torch.set_num_threads(2)

from mptc.config import TrainConfig  # noqa: E402
from mptc.train.loop import train  # noqa: E402


@pytest.fixture(scope="session")
def tiny_config() -> TrainConfig:
    """An MLP MPT-1/32 ticket at quarter width: seconds to train, still a real ticket."""
    return TrainConfig(model="mlp", method="biprop", sparsity=0.5, width=0.25, epochs=3, seed=7)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_config):
    """A finished run directory of :func:`tiny_config`."""
    return train(tiny_config, tmp_path_factory.mktemp("runs") / "tiny")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def tiny_dense_run(tmp_path_factory):
    """A finished quarter-width dense MLP run: the pre-trained model jackpots search in and the
    target ``mptc approximate`` approximates."""
    return train(
        TrainConfig(model="mlp", method="dense", width=0.25, epochs=3, seed=1),
        tmp_path_factory.mktemp("runs") / "dense",
    )
