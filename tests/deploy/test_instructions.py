"""Guest instructions per inference under qemu: exact repeats, consistent across run counts."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mptc.artifact import MODULE_FILE, REFERENCE_FILE, SOURCE_MODEL_FILE, read_reference, write_reference
from mptc.deploy import instructions
from mptc.errors import DeviceError, InputError
from tests.deploy.conftest import RPI4, fresh_copy, write_out
from tests.passes.mptc_graphs import model_from_text, ternary


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


def test_an_unknown_engine_is_an_input_error(mlp_host_out: Path) -> None:
    with pytest.raises(InputError, match="unknown engine 'tflite' to count: expected one of mptc, onnxruntime"):
        instructions.instruction_counts(mlp_host_out, "rpi4", engine="tflite")


def test_missing_peer_says_how_to_fix_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An emulator set up before the peer was part of it: one error naming the set-up command,
    before anything runs (the launcher and qemu here fail if they are run)."""
    root, out = tmp_path / "arm", tmp_path / "out"
    for stub in (root / "bin" / "python3-aarch64", tmp_path / "path" / "qemu-aarch64"):
        stub.parent.mkdir(parents=True)
        stub.write_text("#!/bin/sh\nexit 1\n")
        stub.chmod(0o755)
    (root / "lib").mkdir()
    (root / "lib" / "libinsn_count.so").touch()
    (root / ".ready").touch()
    out.mkdir()
    for name in (MODULE_FILE, SOURCE_MODEL_FILE, REFERENCE_FILE):
        (out / name).touch()
    monkeypatch.setenv("MPTC_ARM_ROOT", str(root))
    monkeypatch.setenv("PATH", f"{tmp_path / 'path'}:{os.environ['PATH']}")
    missing = rf"onnxruntime for aarch64 is missing \({root / 'ortlib'}\): run `make arm-emulator`"
    with pytest.raises(DeviceError, match=missing):
        instructions.instruction_counts(out, "rpi4", runs=1, engine="onnxruntime")
    with pytest.raises(DeviceError, match=missing):
        instructions.compare_instructions(out, "rpi4", runs=1)


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


@pytest.fixture(scope="module")
def binary_conv_out(tmp_path_factory: pytest.TempPathFactory, arm_ready: Path) -> Path:
    """A Where-signed 3x3 conv 16 -> 16 at 6x6, ternary weights 50 % pruned, compiled for rpi4."""
    import mptc

    text = """<ir_version: 10, opset_import: ["" : 19]>
    g (float[1,16,6,6] x) => (float[1,16,6,6] y) <float zero = {0.0}, float one = {1.0}, float m1 = {-1.0}> {
      ge = GreaterOrEqual(x, zero)
      s = Where(ge, one, m1)
      y = Conv <pads = [1, 1, 1, 1]> (s, w)
    }"""
    folder = tmp_path_factory.mktemp("binary-conv")
    model = model_from_text(text, w=ternary(np.random.default_rng(3), (16, 16, 3, 3)))
    (folder / "model.onnx").write_bytes(model.SerializeToString())
    mptc.compile(folder / "model.onnx", target="arm", board="rpi4", out=folder / "out")
    return folder / "out"


@pytest.mark.emulated
def test_module_and_peer_counts_repeat_and_give_the_ratio(binary_conv_out: Path) -> None:
    first = instructions.compare_instructions(binary_conv_out, "rpi4", runs=3)
    again = instructions.compare_instructions(binary_conv_out, "rpi4", runs=3)
    assert first.peer == "onnxruntime 1.19.2"
    for ours, theirs in ((first.mptc, again.mptc), (first.onnxruntime, again.onnxruntime)):
        assert ours.total > 0
        assert theirs.total == pytest.approx(ours.total, rel=1e-6)
    assert first.mptc.neon_cnt > 0  # the bit-packed kernel's popcount
    assert first.onnxruntime.neon_cnt == 0  # onnxruntime convolves in fp32
    assert first.ratio == first.onnxruntime.total / first.mptc.total
    # a layer this small is mostly each engine's Python call, and onnxruntime's session.run costs
    # more instructions than the Relax VM's call; its fp32 conv adds 16 x 16 x 9 x 36 multiply-adds
    assert first.ratio > 1


@pytest.mark.emulated
def test_each_kernel_call_is_counted_exactly(binary_conv_out: Path) -> None:
    """One kernel call, counted between two markers: every popcount of the inference is in its row
    (the VM and Python execute none), and its total is the inference's within the VM's dispatch."""
    [row] = instructions.kernel_instructions(binary_conv_out, "rpi4")
    assert instructions.kernel_instructions(binary_conv_out, "rpi4") == [row]  # a count repeats exactly
    assert row.kernel.startswith("mptc_0_") and row.output_shape == (1, 16, 6, 6)
    whole = instructions.instruction_counts(binary_conv_out, "rpi4", runs=3)
    assert row.counts.neon_cnt == whole.neon_cnt > 0
    assert abs(row.counts.total - whole.total) < 0.1 * whole.total


@pytest.mark.emulated
def test_the_modules_work_splits_over_a_boards_threads(binary_conv_out: Path) -> None:
    """The module's code counted per guest thread: at 1 thread all of it on one (less than the
    whole inference, which runs the VM and Python too); at 4, four threads share about the same
    work, each a fraction of it, and the split repeats exactly."""
    one = instructions.thread_instructions(binary_conv_out, "rpi4", threads=1, runs=2)
    whole = instructions.instruction_counts(binary_conv_out, "rpi4", runs=2)
    assert len(one.per_thread) == 1 and 0 < one.work < whole.total
    four = instructions.thread_instructions(binary_conv_out, "rpi4", threads=4, runs=2)
    assert len(four.per_thread) == 4 and four.threads == 4
    assert one.work <= four.work < 1.5 * one.work  # each task's own set-up on top
    assert four.busiest < 0.5 * one.work and 0.5 < four.balance <= 1
    assert instructions.thread_instructions(binary_conv_out, "rpi4", threads=4, runs=2) == four


@pytest.mark.emulated
def test_the_modules_code_splits_into_blocks_exactly(binary_conv_out: Path) -> None:
    """Each translated block of the module's code with its executions per inference: together the
    module's one-thread count, to the instruction; whole executions per inference; the same again;
    the conv's popcount loop (a block run once per tap row of each tile) near the top."""
    blocks = instructions.block_counts(binary_conv_out, "rpi4", runs=2)
    one = instructions.thread_instructions(binary_conv_out, "rpi4", threads=1, runs=2)
    assert sum(block.per_inference for block in blocks) == one.work
    assert all(block.executions == int(block.executions) > 0 for block in blocks)
    assert [b.per_inference for b in blocks] == sorted((b.per_inference for b in blocks), reverse=True)
    assert instructions.block_counts(binary_conv_out, "rpi4", runs=2) == blocks
    assert blocks[0].executions > 1 and blocks[0].instructions > 10


@pytest.mark.emulated
def test_profile_lists_each_kernel_calls_instructions(binary_conv_out: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from mptc.cli import main

    out = fresh_copy(binary_conv_out, tmp_path / "out")
    args = ["profile", str(out), "--emulate", "rpi4", "--instructions", "--per-layer", "--repeat", "1"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    section = json.loads((out / "profile.json").read_text())["instructions"]
    [row] = section["per_kernel"]
    assert row["output_shape"] == [1, 16, 6, 6] and row["neon_cnt"] == section["mptc"]["neon_cnt"]
    assert "per kernel call, most first" in result.output
    assert f"{row['total']:,.0f}" in result.output and f"{row['kernel']} (1x16x6x6)" in result.output
    cores = section["cores"]  # a Pi 4's four cores, one thread each
    assert cores["threads"] == 4 and len(cores["per_thread"]) == 4 and cores["work"] >= cores["one_thread"]
    assert cores["critical_path_gain"] == cores["one_thread"] / cores["per_thread"][0] > 1
    assert f"on the board's 4 cores: the module's code splits with balance {cores['balance']:.3f}" in result.output


@pytest.mark.emulated
def test_a_peer_output_off_the_reference_is_refused(binary_conv_out: Path, tmp_path: Path) -> None:
    out = fresh_copy(binary_conv_out, tmp_path / "out")
    x, y = read_reference(out)
    y = y.copy()
    y.flat[0] += 1e-3 * max(1.0, float(abs(y).max()))  # ten times the tolerance of every output check
    write_reference(out, x, y)
    with pytest.raises(DeviceError, match="onnxruntime on emulated rpi4 .* differs from reference.npz"):
        instructions.instruction_counts(out, "rpi4", runs=1, engine="onnxruntime")


def test_profile_counts_only_on_a_board_emulated_here(mlp_host_out: Path) -> None:
    from click.testing import CliRunner

    from mptc.cli import main

    result = CliRunner().invoke(main, ["profile", str(mlp_host_out), "--instructions"])
    assert result.exit_code == 4 and result.output.startswith("mptc: error: --instructions counts on a board")
    assert result.output.count("\n") == 1


@pytest.mark.emulated
def test_profile_counts_a_packed_model_and_its_fp32_network(binary_conv_out: Path, tmp_path: Path) -> None:
    """A packed source model: the peer counts the fp32 network it encodes (mptc.ops.unpack), not bit unpacking."""
    from click.testing import CliRunner

    import mptc
    from mptc.cli import main

    packed = mptc.optimize(binary_conv_out.parent / "model.onnx", tmp_path / "packed.onnx").path
    mptc.compile(packed, target="arm", board="rpi4", out=tmp_path / "out")
    args = ["profile", str(tmp_path / "out"), "--emulate", "rpi4", "--instructions", "--compare", "onnxruntime"]
    result = CliRunner().invoke(main, [*args, "--repeat", "1", "--rounds", "1"])
    assert result.exit_code == 0, result.output
    section = json.loads((tmp_path / "out" / "profile.json").read_text())["instructions"]
    assert section["core"] == "cortex-a72" and section["mptc"]["neon_cnt"] > 0
    assert section["ratio"] == section["onnxruntime"]["total"] / section["mptc"]["total"]
    assert f"instructions: {section['mptc']['total']:,.0f} per inference on emulated cortex-a72" in result.output
    assert "onnxruntime 1.19.2 (aarch64) on the fp32 network of source.onnx" in result.output
