"""int8 layers on the dotprod boards (``udot``, ``kernels.int8_dense`` / ``kernels.int8_conv``),
emulated: ``instructions`` checks the module's output against the reference of the quantized
model (onnxruntime's run of the QDQ pairs) before it counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from mptc.deploy import instructions
from mptc.targets.chooser import INT8_DOT
from mptc.verify import REL_TOLERANCE
from tests.targets.packed_models import GraphBuilder, ternary


def _two_dense_layers(rng: np.random.Generator, sparsity: float = 0.5) -> onnx.ModelProto:
    """dense 100 -> 72 (real input) -> Relu -> dense 72 -> 10 (real input)."""
    g = GraphBuilder(rng)
    h = g.node("Relu", [g.binary("BinaryDense", "x", ternary(rng, 72, 100, sparsity), "d1", "real")], "relu")
    return g.model((1, 100), g.binary("BinaryDense", h, ternary(rng, 10, 72, sparsity), "d2", "real"))


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


def _two_convs_of_one_input(rng: np.random.Generator, sparsity: float = 0.5) -> onnx.ModelProto:
    """Two real-input convs of the same (1, 20, 14, 14) input, their outputs flattened and
    concatenated: 3x3 stride 1 -> 40 channels (rows of 14: column tiles 5, 5, 4, words loaded four
    at a time) and 5x5 stride 2 -> 16 (words broadcast one by one); 20 channels fill no whole
    word group. Each reads the graph input, so no float noise upstream moves a level."""
    g = GraphBuilder(rng)
    wide = g.binary(
        "BinaryConv", "x", ternary(rng, 40, 20 * 9, sparsity), "c1", "real", kernel_shape=[3, 3], pads=[1] * 4
    )
    strided = g.binary(
        "BinaryConv",
        "x",
        ternary(rng, 16, 20 * 25, sparsity),
        "c2",
        "real",
        kernel_shape=[5, 5],
        strides=[2, 2],
        pads=[2] * 4,
    )
    flat = [g.node("Flatten", [y], f"{y}.flat") for y in (wide, strided)]
    return g.model((1, 20, 14, 14), g.node("Concat", flat, "y", axis=1))


@pytest.mark.emulated
def test_int8_convs_run_udot_on_the_emulated_rpi5(tmp_path: Path, arm_ready: Path) -> None:
    import mptc

    rng = np.random.default_rng(21)
    onnx.save(_two_convs_of_one_input(rng), tmp_path / "model.onnx")
    calibration = (rng.standard_normal((8, 20, 14, 14)) + 0.3).astype(np.float32)
    built = mptc.compile(
        tmp_path / "model.onnx", target="arm", board="rpi5", out=tmp_path / "int8", calibration=calibration
    )
    assert [(layer["kernel"], layer["input_mode"]) for layer in built.layers] == [(INT8_DOT, "int8")] * 2
    # both convs quantize the graph input itself: held to the fp32 modules' tolerance, not int8's
    counted = instructions.instruction_counts(tmp_path / "int8", "rpi5", runs=1, tolerance=REL_TOLERANCE)
    assert counted.total > 0


def test_sparser_convs_than_arms_int8_break_even_keep_their_real_input_kernels_dense_layers_do_not(
    tmp_path: Path,
) -> None:
    import mptc
    from mptc.targets.policy import default_policy

    below = default_policy("arm").int8_conv_below
    assert below is not None
    rng = np.random.default_rng(22)
    onnx.save(_two_convs_of_one_input(rng, sparsity=below + 0.1), tmp_path / "convs.onnx")
    onnx.save(_two_dense_layers(rng, sparsity=below + 0.1), tmp_path / "dense.onnx")
    for name, shape in (("convs", (8, 20, 14, 14)), ("dense", (8, 100))):
        built = mptc.compile(
            tmp_path / f"{name}.onnx",
            target="arm",
            board="rpi5",
            out=tmp_path / name,
            calibration=rng.standard_normal(shape).astype(np.float32),
        )
        modes = {"convs": {"real"}, "dense": {"int8"}}[name]
        assert {layer["input_mode"] for layer in built.layers} == modes and built.activations.dtype == "int8"
