"""Guest instructions per inference under qemu: exact repeats, consistent across run counts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mptc.deploy import instructions
from mptc.errors import DeviceError, InputError
from tests.deploy.conftest import RPI4, write_out


def _dense(depth: int) -> tuple[Any, np.ndarray, np.ndarray]:
    """y = x . W^T, float32, 64 outputs of ``depth`` terms each: work proportional to ``depth``."""
    from tvm import relax, te

    rng = np.random.default_rng(2)
    weight = rng.standard_normal((64, depth)).astype(np.float32)

    def dense(a: te.Tensor, w: te.Tensor) -> te.Tensor:
        k = te.reduce_axis((0, depth), "k")
        return te.compute((1, 64), lambda i, j: te.sum(a[i, k] * w[j, k], axis=k))

    builder = relax.BlockBuilder()
    x_var = relax.Var("x", relax.TensorType((1, depth), "float32"))
    with builder.function("main", [x_var]):
        with builder.dataflow():
            out = builder.emit_output(builder.emit_te(dense, x_var, relax.const(weight)))
        builder.emit_func_output(out)
    x = rng.standard_normal((1, depth)).astype(np.float32)
    return builder.get(), x, x @ weight.T


def test_runs_and_warmup_must_be_positive(mlp_host_out: Path) -> None:
    with pytest.raises(InputError, match="at least 1: got runs=0, warmup=1"):
        instructions.instructions_per_inference(mlp_host_out, "rpi4", runs=0)


def test_an_out_folder_without_a_module_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="has no module.so"):
        instructions.count_instructions(tmp_path, "rpi4", runs=1, warmup=1)


def test_missing_plugin_says_how_to_fix_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPTC_ARM_ROOT", str(tmp_path))
    with pytest.raises(DeviceError, match="plugin is missing .* run `make arm-emulator`"):
        instructions.plugin()


@pytest.mark.emulated
def test_counts_repeat_exactly_and_scale_with_runs(mlp_rpi4_out: Path) -> None:
    first = instructions.instruction_counts(mlp_rpi4_out, "rpi4", runs=5)
    again = instructions.instruction_counts(mlp_rpi4_out, "rpi4", runs=5)
    more = instructions.instruction_counts(mlp_rpi4_out, "rpi4", runs=10)
    assert first == again  # exact: a count, not a timing
    assert first.total > 0 and first.fp_simd > 0 and first.loads_stores > 0
    assert first.neon_cnt == 0  # a float MLP has no popcount
    # 16-32-10 MLP: ~18 k instructions a call, most of them the Python/TVM call itself, whose
    # allocator state drifts with the call count by about 1 % (measured: 17 688 at 5 runs, 17 697 at 10)
    assert more.total == pytest.approx(first.total, rel=0.05)


@pytest.mark.emulated
def test_twice_the_work_costs_more_instructions(tmp_path: Path, arm_ready: Path) -> None:
    small = instructions.instructions_per_inference(
        write_out(tmp_path / "s", _dense(512), RPI4, "rpi4"), "rpi4", runs=3
    )
    large = instructions.instructions_per_inference(
        write_out(tmp_path / "l", _dense(1024), RPI4, "rpi4"), "rpi4", runs=3
    )
    # measured: 99 633 and 189 824 (the extra 64 x 512 multiply-adds cost ~2.75 instructions each);
    # the floor is one 4-lane FMA per 4 of them
    assert large - small > 64 * 512 / 4
