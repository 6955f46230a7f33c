"""The fp32 glue's NEON build on an emulated board: row weights as vectors, strided 1x1 convs subsampled."""

from __future__ import annotations

import dataclasses
import re
import subprocess
from pathlib import Path

import pytest

from mptc.deploy.profile import profile
from mptc.targets.compile import compile_model
from mptc.targets.policy import default_policy
from tests.targets.glue_models import downsample_model

pytestmark = pytest.mark.emulated


def test_conv_glue_runs_on_the_emulated_rpi4(arm_ready: Path, tmp_path: Path) -> None:
    """A 3x3 conv (the direct glue, as a conv Winograd does not take runs it) and a stride-2 1x1
    shortcut: the FMAs take their weights as lanes of loaded vectors (by element), the shortcut
    reads a subsampled copy with whole-vector loads, not lane by lane, and the outputs match
    onnxruntime's."""
    out = tmp_path / "rpi4"
    direct = dataclasses.replace(default_policy("arm"), winograd_min_channels=None)
    compile_model(downsample_model(size=20), "arm", out, board="rpi4", policy=direct)
    listing = subprocess.run(
        ["aarch64-linux-gnu-objdump", "-d", "--no-show-raw-insn", str(out / "module.so")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # a weight loaded alone sits in lane 0; lanes 1-3 are weights loaded four at a time
    assert len(re.findall(r"\tfmla\tv\d+\.4s, v\d+\.4s, v\d+\.s\[[123]\]", listing)) >= 48
    assert not re.search(r"\tld1\t\{v\d+\.s\}\[\d\]", listing)  # no lane-by-lane gather
    assert "<strided_slice" in listing
    report = profile(out, emulated_board="rpi4", repeat=2)
    assert report["outputs_match"] and report["argmax_match"], report
