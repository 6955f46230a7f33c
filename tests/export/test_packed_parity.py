"""PyTorch vs exported ONNX vs packed ONNX, for every model family and method (issue acceptance)."""

import numpy as np
import onnx
import pytest

from mptc.errors import UnsupportedError
from mptc.export.onnx_export import CHECK_SAMPLES, compare_logits, decisive_agreement, run_onnx
from mptc.passes.pipeline import optimize
from tests.export.conftest import FAMILIES, make_ticket

MASK_METHODS = ["edge-popup", "biprop", "biprop-1-1"]


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("method", MASK_METHODS)
def test_packed_onnx_matches_pytorch_and_onnx(exported, family, method):
    model, config, dataset, report = exported(family, method)
    # Binary activations: a pre-activation within rounding of 0 may flip a sign in a deep ResNet,
    # so those models get the export's own limits, on as many samples as the export checks.
    x = dataset.test.x[: CHECK_SAMPLES if config.binary_act else 32]
    reference = model(x).detach().numpy()
    unpacked = onnx.load(report.path)
    packed = optimize(unpacked)
    assert any(node.domain == "ai.mptc" for node in packed.graph.node)
    for candidate in (run_onnx(unpacked, x.numpy()), run_onnx(packed, x.numpy())):
        if config.binary_act:
            compare_logits(reference, candidate, "PyTorch and onnxruntime", binary_act=True)
            continue
        np.testing.assert_allclose(candidate, reference, rtol=1e-4, atol=1e-4 * np.abs(reference).max())
        assert decisive_agreement(reference, candidate) == 1.0


def test_dense_model_has_nothing_to_pack(exported):
    *_, report = exported("mlp", "dense")
    with pytest.raises(UnsupportedError):
        optimize(onnx.load(report.path))


@pytest.mark.slow
def test_packed_resnet18_is_at_most_a_twelfth_of_fp32(tmp_path):
    from mptc.export import export_model

    model, config, dataset = make_ticket("resnet18", "biprop", sparsity=0.5, width=1.0)
    report = export_model(model, config, dataset, tmp_path / "r18.onnx")
    packed = optimize(onnx.load(report.path))
    fp32_bytes, packed_bytes = report.path.stat().st_size, len(packed.SerializeToString())
    assert packed_bytes * 12 <= fp32_bytes, (packed_bytes, fp32_bytes)
