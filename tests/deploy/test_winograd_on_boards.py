"""The Winograd convs' aarch64 builds on an emulated board, matching onnxruntime: F(2x2, 3x3) on a
14x14 output (4 does not divide it), F(4x4, 3x3) on a 16x16 one."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mptc.deploy.profile import profile
from mptc.targets.compile import compile_model
from tests.targets.glue_models import conv_model

pytestmark = pytest.mark.emulated


@pytest.mark.parametrize("size", [14, 16], ids=["F2", "F4"])
def test_winograd_conv_runs_on_the_emulated_rpi4(arm_ready: Path, tmp_path: Path, size: int) -> None:
    out = tmp_path / "rpi4"
    compile_model(conv_model((1, 24, size, size), 24, act="relu", residual=True), "arm", out, board="rpi4")
    kernels = re.findall(rb"__tvm_ffi_(\w+)\0", (out / "module.so").read_bytes())
    # the input and the output transform (named for the conv, c), the GEMMs TVM's matmul
    assert len({name for name in kernels if name.startswith(b"mptc_0_c")}) == 2
    assert any(b"matmul" in name for name in kernels) and not any(b"conv2d" in name for name in kernels)
    report = profile(out, emulated_board="rpi4", repeat=2)
    assert report["outputs_match"] and report["argmax_match"], report
