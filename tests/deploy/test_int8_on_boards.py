"""int8 dense layers on the dotprod boards (``udot``, ``kernels.int8_dense``), emulated:
``instructions`` checks the module's output against the reference of the quantized model
(onnxruntime's run of the QDQ pair) before it counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from mptc.deploy import instructions
from mptc.targets.chooser import INT8_DOT
from tests.targets.packed_models import GraphBuilder, ternary


def _two_dense_layers(rng: np.random.Generator) -> onnx.ModelProto:
    """dense 100 -> 72 (real input) -> Relu -> dense 72 -> 10 (real input)."""
    g = GraphBuilder(rng)
    h = g.node("Relu", [g.binary("BinaryDense", "x", ternary(rng, 72, 100, 0.5), "d1", "real")], "relu")
    return g.model((1, 100), g.binary("BinaryDense", h, ternary(rng, 10, 72, 0.5), "d2", "real"))


@pytest.mark.emulated
def test_int8_dense_layers_run_udot_on_the_emulated_rpi5(tmp_path: Path, arm_ready: Path) -> None:
    import mptc

    rng = np.random.default_rng(18)
    onnx.save(_two_dense_layers(rng), tmp_path / "model.onnx")
    calibration = (rng.standard_normal((16, 100)) + 0.5).astype(np.float32)
    int8 = mptc.compile(
        tmp_path / "model.onnx", target="arm", board="rpi5", out=tmp_path / "int8", calibration=calibration
    )
    assert [(layer["kernel"], layer["epilogue"]) for layer in int8.layers] == [(INT8_DOT, "relu"), (INT8_DOT, "")]
    assert int8.activations.dtype == "int8"
    fp32 = mptc.compile(tmp_path / "model.onnx", target="arm", board="rpi5", out=tmp_path / "fp32")
    assert INT8_DOT not in {layer["kernel"] for layer in fp32.layers}
    counted = instructions.instruction_counts(tmp_path / "int8", "rpi5", runs=1).total
    assert counted < instructions.instruction_counts(tmp_path / "fp32", "rpi5", runs=1).total


def test_a_pi_4_without_dotprod_runs_the_pair_before_the_fp32_kernels(tmp_path: Path) -> None:
    import mptc

    rng = np.random.default_rng(19)
    onnx.save(_two_dense_layers(rng), tmp_path / "model.onnx")
    calibration = rng.standard_normal((16, 100)).astype(np.float32)
    built = mptc.compile(
        tmp_path / "model.onnx", target="arm", board="rpi4", out=tmp_path / "out", calibration=calibration
    )
    assert {layer["input_mode"] for layer in built.layers} == {"real"} and built.activations.dtype == "int8"
