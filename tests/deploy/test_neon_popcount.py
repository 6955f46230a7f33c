"""The aarch64 XNOR-popcount kernels (popcounts in 16-bit counters, ``schedules.lane_counts``) on
an emulated Cortex-A72: ``instructions`` compares the module's output with the reference that
`mptc compile` wrote from onnxruntime before it counts, so a wrong count fails here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from mptc.deploy import instructions
from tests.targets.packed_models import binary_chain, binary_conv_model, binary_dense_model


def _compile(folder: Path, model: onnx.ModelProto) -> Path:
    import mptc

    folder.mkdir(parents=True)
    onnx.save(model, folder / "model.onnx")
    mptc.compile(folder / "model.onnx", target="arm", board="rpi4", out=folder / "out")
    return folder / "out"


@pytest.mark.emulated
def test_packed_chain_matches_reference_on_emulated_rpi4(tmp_path: Path, arm_ready: Path) -> None:
    """Conv with float and packed inputs and outputs, a pool between, stride 2, odd channel counts,
    dense layers; zero-crossing outputs (``signed_scales``) test the thresholds on folded counts."""
    out = _compile(tmp_path / "chain", binary_chain(np.random.default_rng(15), batch=1, signed_scales=True))
    assert instructions.instruction_counts(out, "rpi4", runs=1).neon_cnt > 0


@pytest.mark.emulated
def test_float_conv_in_counters_matches_reference_on_emulated_rpi4(tmp_path: Path, arm_ready: Path) -> None:
    """A 3x3 conv 130 -> 37 at 9x9 (three channel words, the last partial; odd outputs), padded."""
    model = binary_conv_model(np.random.default_rng(16), 1, 130, 9, 37, 3, 1, 1, mode="binary")
    counts = instructions.instruction_counts(_compile(tmp_path / "conv", model), "rpi4", runs=1)
    # every step is one cnt on a vector of 2 outputs' words: 81 positions x 19 vectors x 9 taps x 3 words
    assert counts.neon_cnt == 81 * 19 * 9 * 3


@pytest.mark.emulated
@pytest.mark.parametrize("zeros", ["none", "one", "every-7th"])
@pytest.mark.parametrize("op", ["conv", "dense"])
def test_onnx_sign_in_counters_matches_reference_on_emulated_rpi4(
    tmp_path: Path, arm_ready: Path, op: str, zeros: str
) -> None:
    """An ONNX ``Sign`` conv and dense layer in 16-bit counters (``exact_sign.IN_COUNTERS``): rows
    (a dense layer: calls) that read no zero count as binary input, the others the exact term
    with its offsets; the reference input is replaced by one with the zeros named, and its
    expected output."""
    from mptc.artifact import write_reference
    from tests.targets.harness import reference, sample

    rng = np.random.default_rng(17)
    if op == "conv":
        model = binary_conv_model(rng, 1, 70, 9, 13, 3, 1, 1, mode="sign")
    else:
        model = binary_dense_model(rng, 2, 200, 37, mode="sign")
    out = _compile(tmp_path / op, model)
    x = sample(model)  # every 7th value zero
    if zeros != "every-7th":
        x = np.where(x == 0.0, np.float32(0.5), x)
    if zeros == "one":
        x.reshape(-1)[x.size // 2] = 0.0
    write_reference(out, x, reference(model, x))
    counts = instructions.instruction_counts(out, "rpi4", runs=1)  # raises if the outputs differ
    assert counts.neon_cnt > 0
