"""Whole random-weight tickets of the CIFAR families compiled for x86: the module runs and
matches onnxruntime on the packed model (the issue's acceptance for compile)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from mptc.deploy.profile import profile
from mptc.export import export_model
from mptc.passes.pipeline import optimize
from mptc.targets.compile import compile_model
from tests.export.conftest import make_ticket

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("family", ["vgg-small", "resnet18"])
@pytest.mark.parametrize("method", ["biprop", "biprop-1-1"])
def test_cifar_family_ticket_compiles_and_matches_onnxruntime(tmp_path, family, method):
    model, config, dataset = make_ticket(family, method, sparsity=0.9 if method == "biprop" else 0.5)
    with torch.no_grad():  # BatchNorm statistics of real activations, as after training
        model.train()
        model(dataset.train.x[:128])
        model.eval()
    report = export_model(model, config, dataset, tmp_path / "model.onnx")
    packed = optimize(onnx.load(report.path))
    manifest = compile_model(packed, "x86", tmp_path / "out")
    kernels = {layer["kernel"] for layer in manifest["layers"]}
    assert ("xnor-popcount" in kernels) == (method == "biprop-1-1"), kernels
    measured = profile(tmp_path / "out", repeat=2)
    assert measured["outputs_match"] and measured["argmax_match"], measured
    assert measured["max_rel_error"] <= 1e-4
    reference = np.load(tmp_path / "out" / "reference.npz")
    assert reference["y"].shape == (1, 10)
