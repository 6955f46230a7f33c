"""The user's loop for real: an MPT-1/1 ticket trained here, exported, packed, compiled for a
board, and run on that board (emulated) over TVM RPC, matching onnxruntime."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import pytest

from mptc.config import TrainConfig
from mptc.deploy.profile import profile
from mptc.export import export_run
from mptc.passes.pipeline import optimize_file
from mptc.targets.compile import compile_model
from mptc.targets.policy import default_policy
from mptc.train.loop import train

pytestmark = [pytest.mark.emulated, pytest.mark.slow]


@pytest.fixture(scope="module")
def packed_ticket(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("mpt11")
    config = TrainConfig(model="mlp", method="biprop", binary_act=True, width=0.25, epochs=2, seed=5)
    train(config, folder / "run")
    export_run(folder / "run", folder / "model.onnx")
    optimize_file(folder / "model.onnx", folder / "packed.onnx")
    modes = [a.s for n in onnx.load(folder / "packed.onnx").graph.node for a in n.attribute if a.name == "input_mode"]
    assert b"binary" in modes  # MPT-1/1: the hidden layers run XNOR-popcount
    return folder / "packed.onnx"


@pytest.mark.parametrize("board, first", [("rpi4", "dense-ternary"), ("rpi5", "sparse-sign-split")])
def test_compiled_mpt11_ticket_runs_on_the_emulated_board(
    packed_ticket: Path, arm_ready: Path, tmp_path: Path, board: str, first: str
) -> None:
    """The real-input first layer in each of its forms on ARM: dense-ternary (code bytes and a
    table) and, forced on rpi5, the sign-split sums over each output's own list."""
    out = tmp_path / board
    policy = default_policy("arm")
    if first == "sparse-sign-split":
        policy = dataclasses.replace(policy, dense_ternary_break_even=((1 << 62, 0.0),))
    manifest = compile_model(packed_ticket, "arm", out, board=board, policy=policy)
    kernels = [layer["kernel"] for layer in manifest["layers"]]
    assert kernels == [first] + ["xnor-popcount"] * 2, manifest["layers"]
    report = profile(out, emulated_board=board, repeat=3)
    assert report["outputs_match"] and report["argmax_match"], report
    assert report["emulated"] and report["device"]["emulated_board"] == board
    reference = np.load(out / "reference.npz")
    assert reference["y"].shape == tuple(report.get("output_shape", reference["y"].shape))


@pytest.fixture(scope="module")
def packed_conv_ticket(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("mpt132")
    config = TrainConfig(model="conv4", method="biprop", sparsity=0.7, width=0.25, epochs=1, seed=5)
    train(config, folder / "run")
    export_run(folder / "run", folder / "model.onnx")
    optimize_file(folder / "model.onnx", folder / "packed.onnx")
    return folder / "packed.onnx"


@pytest.mark.parametrize("lookup", [True, False], ids=["ternary-lut", "block-sparse"])
def test_compiled_mpt132_conv_ticket_runs_on_the_emulated_board(
    packed_conv_ticket: Path, arm_ready: Path, tmp_path: Path, lookup: bool
) -> None:
    """Real-input convs (70% sparse) on an emulated Raspberry Pi 4, matching onnxruntime: the arm
    policy's lookup gather over 3-channel groups, and without it the arm policy's blocks (one
    output channel) in channel groups on the 8x8 maps, blocks of 4 in one group on the 4x4 ones;
    ReLU fused into both (NEON vectors of 4 and 2 lanes)."""
    arm = default_policy("arm")
    policy = arm if lookup else dataclasses.replace(arm, lut_below=None)
    manifest = compile_model(packed_conv_ticket, "arm", tmp_path, board="rpi4", policy=policy)
    convs = [layer for layer in manifest["layers"] if layer["op_type"] == "BinaryConv"]
    kernel = "ternary-lut" if lookup else "block-sparse"
    assert {layer["kernel"] for layer in convs} == {kernel} and {layer["epilogue"] for layer in convs} == {"relu"}
    if not lookup:
        blocks = {f"{b} output(s) per block" for b in (arm.conv_block, arm.short_flat_block)}
        assert {next(b for b in blocks if b in layer["reason"]) for layer in convs} == blocks, convs
    report = profile(tmp_path, emulated_board="rpi4", repeat=3)
    assert report["outputs_match"] and report["argmax_match"], report
