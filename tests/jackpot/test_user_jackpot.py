"""A lottery jackpot in a user's own pre-trained ResNet-style module beats magnitude pruning at 90%."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

import mptc.jackpot  # noqa: F401  (registers the jackpot methods' hooks)
from mptc.config import TrainConfig
from mptc.train.loop import train

NET = "tests.models.user_nets:TinyResNet"


def test_jackpot_in_a_user_model_beats_magnitude_pruning_at_90_percent(tmp_path):
    dense = train(
        TrainConfig(model=NET, model_args={"width": 16}, method="dense", epochs=8, seed=0), tmp_path / "dense"
    )
    assert dense.metrics["test_accuracy"] > 0.9  # a real pre-trained model to search in
    weights = tmp_path / "pretrained.safetensors"
    save_file({key: value.contiguous() for key, value in dense.model.state_dict().items()}, weights)
    jackpot = train(
        TrainConfig(
            model=NET, model_args={"width": 16}, method="jackpot", sparsity=0.9, pretrained=str(weights), epochs=6
        ),
        tmp_path / "jackpot",
    )
    report = jackpot.metrics["jackpot"]
    assert report["pretrained_test_accuracy"] == pytest.approx(dense.metrics["test_accuracy"])
    assert jackpot.metrics["sparsity"] == pytest.approx(0.9, abs=1e-3)
    assert jackpot.metrics["test_accuracy"] > report["magnitude_test_accuracy"] + 0.05
    assert jackpot.metrics["test_accuracy"] > report["magnitude_recalibrated_test_accuracy"]
    # the search stayed inside the pre-trained weights: every masked weight is the dense one
    dense_state = dense.model.state_dict()
    for key, value in jackpot.model.state_dict().items():
        if key.endswith(".weight") and key in dense_state:
            assert torch.equal(value, dense_state[key]), key
