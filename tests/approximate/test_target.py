import numpy as np
import pytest
import torch

from mptc.approximate.target import load_target
from mptc.data import load_dataset
from mptc.errors import InputError


def test_folded_mlp_matches_the_torch_model(tiny_dense_run):
    model, target, config = load_target(tiny_dense_run.run_dir)
    x = load_dataset("digits").test.x[:50]
    with torch.no_grad():
        expected = model(x).double().numpy()
    np.testing.assert_allclose(target(x.reshape(50, -1).double().numpy()), expected, atol=1e-4)
    assert target.widths == [64, 128, 128, 10]


def test_only_dense_mlp_runs_are_targets(tiny_run):
    with pytest.raises(InputError, match="needs a --model mlp --method dense run"):
        load_target(tiny_run.run_dir)
