"""PyTorch ticket -> exported ONNX (mptc.export) -> packed ONNX: same logits in onnxruntime."""

import numpy as np
import onnx
import pytest

from mptc.export.onnx_export import export_run
from mptc.passes.inspect import inspect_model
from mptc.passes.pipeline import optimize
from tests.passes.mptc_graphs import assert_equivalent


@pytest.mark.slow
def test_exported_ticket_packs_every_layer(tiny_run, tmp_path, rng):
    export_run(tiny_run.run_dir, tmp_path / "model.onnx")
    model = onnx.load(tmp_path / "model.onnx")
    packed = optimize(model)
    rows = inspect_model(packed)
    assert rows and all(row.op.startswith("Binary") for row in rows)
    assert all(abs(row.sparsity - 0.5) < 0.01 for row in rows)
    onnx.checker.check_model(packed, full_check=True)
    dims = [d.dim_value or 5 for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert_equivalent(model, packed, {model.graph.input[0].name: rng.standard_normal(dims).astype(np.float32)})
