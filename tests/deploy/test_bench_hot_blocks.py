"""bench/bench_hot_blocks.py on an emulated board: the counted blocks land on the module's own code."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mptc.targets.compile import compile_model
from tests.targets.packed_models import binary_conv_model

REPO = Path(__file__).parents[2]

pytestmark = pytest.mark.skipif(
    not shutil.which("aarch64-linux-gnu-objdump"), reason="needs aarch64 binutils (make arm-emulator)"
)


@pytest.mark.emulated
def test_the_hottest_block_of_a_binary_conv_is_its_popcount_loop(tmp_path: Path, arm_ready: Path) -> None:
    """The block that executes the most instructions is in the conv's kernel and counts bits
    (``cnt``): the offsets the plugin reports map onto the disassembly at the right base."""
    model = binary_conv_model(np.random.default_rng(0), 1, 128, 8, 16, 3, 1, 1, mode="binary")
    compile_model(model, "arm", tmp_path, board="rpi4")
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "bench_hot_blocks.py"), str(tmp_path), "--top", "3"],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    rows = [line for line in done.stdout.splitlines() if re.match(r"^\s+[\d,]+\s+[\d.]+%", line)]
    assert len(rows) == 3
    assert re.search(r"\bmptc_0_\w+\+0x[0-9a-f]+: .*\bcnt \d+", rows[0])
