"""bench/bench_mca.py on a real aarch64 module: the popcount loop is found and estimated below its bound."""

import importlib.util
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from mptc.targets.compile import compile_model
from tests.targets.packed_models import binary_conv_model

pytestmark = pytest.mark.skipif(
    not (shutil.which("llvm-mca") and shutil.which("aarch64-linux-gnu-objdump")),
    reason="needs llvm-mca and aarch64 binutils (make arm-emulator)",
)


def _bench_mca():
    path = Path(__file__).parents[2] / "bench" / "bench_mca.py"
    spec = importlib.util.spec_from_file_location("bench_mca", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_mca"] = module
    spec.loader.exec_module(module)
    return module


def test_the_popcount_loop_and_its_bound(tmp_path):
    mca = _bench_mca()
    model = binary_conv_model(np.random.default_rng(0), 1, 128, 8, 16, 3, 1, 1, mode="binary")
    compile_model(model, "arm", tmp_path, board="rpi4")
    loops = mca.innermost_loops(mca.disassemble(tmp_path / "module.so"))
    popcount = max(loops, key=lambda loop: loop.count("cnt"))
    cnts = popcount.count("cnt")
    assert cnts > 0 and popcount.count("uadalp") == cnts  # NEON's 16-bit counters: one uadalp per cnt
    cycles, bound = mca.mca_cycles(mca.assembly(popcount), "cortex-a72"), mca.popcount_bound(cnts, "cortex-a72")
    assert 0 < bound < cycles  # eor, and and uadalp share the pipes cnt needs
    steps = mca.step_bound(cnts, "cortex-a72")
    assert 3 * bound < steps <= cycles  # the step's four SIMD instructions per cnt; loads come on top
    assert mca.assembly(popcount)[-1].endswith(".Lloop")
