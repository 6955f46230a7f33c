"""Guest instructions per inference of an aarch64 build and of onnxruntime, counted under qemu (no board needed).

Runs OUT/module.so on the reference input in the emulated board's core (QEMU_CPU of the board:
rpi4 -> cortex-a72, rpi5 -> cortex-a76, jetson-orin -> neoverse-n1) at one TVM thread, with the
``insn_count`` TCG plugin (see ``mptc.deploy.instructions``), and prints the count per inference,
in total and by class. Beside it the peer: onnxruntime's aarch64 wheel running OUT/source.onnx in
the same emulated core (one intra-op and one inter-op thread, sequential, ORT_ENABLE_ALL, CPU
execution provider), and the ratio of their counts (onnxruntime / mptc: above 1, mptc executes
fewer instructions). A count, not a time: it repeats exactly for the same build and settings.

    .venv/bin/python bench/bench_arm.py OUT/ [--board rpi4] [--runs 10] [--warmup 1] [--no-peer] [--threads 4]
    .venv/bin/python bench/bench_arm.py --layers [--dir DIR] [--board rpi5] [--runs 3] [--no-peer] [--threads 4]

With ``--threads N`` (a Pi has 4 cores) it also counts the instructions executed in the module's
code per guest thread, at 1 and at N TVM threads (``mptc.deploy.instructions.thread_instructions``):
the busiest thread's share is the critical path, and 1 thread's count over it the most N threads can
gain (the thread pool's waiting, which depends on the host's timing, is not counted).
The board defaults to the one in OUT/manifest.json. ``--layers`` builds the benchmark layers from
scratch as ONNX models (:data:`LAYERS`: a binary conv whose sign is ``Where(x >= 0, 1, -1)`` and
real-input ternary convs, 3x3 256->256 at 14x14), compiles each for ``--board`` into
``DIR/<board>/<layer>/`` (default: a new temporary folder, kept) and prints one row per layer.
Needs `make arm-emulator`.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mptc.artifact import read_manifest
from mptc.boards import BOARDS, Board
from mptc.deploy.instructions import (
    InstructionComparison,
    InstructionCounts,
    compare_instructions,
    core_split,
    instruction_counts,
    peer_version,
)

PEER_SETTINGS = "1 intra-op + 1 inter-op thread, sequential, ORT_ENABLE_ALL, CPUExecutionProvider"
CLASS_LABELS = (("neon_cnt", "  NEON cnt"), ("loads_stores", "  loads/stores"), ("fp_simd", "  FP/SIMD"))


@dataclass(frozen=True)
class Layer:
    """A 3x3 conv ``channels -> channels`` at ``size x size``, ternary weights ``sparsity`` pruned;
    ``binary``: its input is first signed with ``Where(x >= 0, 1, -1)`` (the binary kernels' form)."""

    name: str
    binary: bool
    sparsity: float
    channels: int = 256
    size: int = 14


LAYERS = (
    Layer("binary-conv-50", binary=True, sparsity=0.5),
    Layer("ternary-conv-90", binary=False, sparsity=0.9),
    Layer("ternary-conv-50", binary=False, sparsity=0.5),
)


def qemu_version() -> str:
    """``qemu-aarch64 --version``'s version number, e.g. ``7.2.22``."""
    text = subprocess.run(["qemu-aarch64", "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"version (\S+)", text)
    return match.group(1) if match else text.splitlines()[0]


def layer_model(layer: Layer, seed: int = 0) -> bytes:
    """The layer as a float ONNX model, its weight per-channel ternary with exactly ``sparsity`` zeros."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    c, n = layer.channels, layer.size
    shape = (c, c, 3, 3)
    kept = (rng.permutation(np.prod(shape)) >= round(layer.sparsity * np.prod(shape))).reshape(shape)
    signs = np.where(rng.random(shape) < 0.5, -1.0, 1.0)
    alpha = rng.uniform(0.1, 2.0, (c, 1, 1, 1))
    weights = [numpy_helper.from_array((signs * kept * alpha).astype(np.float32), "w")]
    nodes, conv_input = [], "x"
    if layer.binary:
        weights += [numpy_helper.from_array(np.float32(v), name) for name, v in (("zero", 0), ("one", 1), ("m1", -1))]
        nodes += [
            helper.make_node("GreaterOrEqual", ["x", "zero"], ["ge"]),
            helper.make_node("Where", ["ge", "one", "m1"], ["s"]),
        ]
        conv_input = "s"
    nodes.append(helper.make_node("Conv", [conv_input, "w"], ["y"], pads=[1, 1, 1, 1]))
    graph = helper.make_graph(
        nodes,
        layer.name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, n, n])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c, n, n])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)], ir_version=10)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def build_layer(layer: Layer, board: str, folder: Path) -> Path:
    """``folder/model.onnx`` and ``folder/out/``: the layer compiled for ``board`` by ``mptc.compile``."""
    import mptc

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(layer_model(layer))
    mptc.compile(folder / "model.onnx", target="arm", board=board, out=folder / "out")
    return folder / "out"


def count(out: Path, board: Board, runs: int, warmup: int, peer: bool) -> InstructionComparison | InstructionCounts:
    """Both engines' counts (the module's alone without ``peer``)."""
    if peer:
        return compare_instructions(out, board.name, runs=runs, warmup=warmup)
    return instruction_counts(out, board.name, runs=runs, warmup=warmup)


def print_counts(result: InstructionComparison | InstructionCounts) -> None:
    """One line per class: each engine's count, the module's share of it, and onnxruntime / mptc."""
    mptc = result.mptc if isinstance(result, InstructionComparison) else result
    peer = result.onnxruntime if isinstance(result, InstructionComparison) else None
    head = f"{'':<28}{'mptc':>16}{'':>9}" + (f"{'onnxruntime':>16}{'':>9}{'ratio':>9}" if peer else "")
    print(head)
    for name, label in (("total", "instructions per inference"), *CLASS_LABELS):
        line = f"{label:<28}"
        for counts in (mptc, peer) if peer else (mptc,):
            value = getattr(counts, name)
            share = f"({value / counts.total:6.1%})" if name != "total" and counts.total else ""
            line += f"{value:>16,.1f}{share:>9}"
        if peer:
            ours = getattr(mptc, name)
            line += f"{getattr(peer, name) / ours:>9.2f}" if ours else f"{'-':>9}"
        print(line)


def thread_gain(out: Path, board: Board, threads: int, runs: int, warmup: int) -> float:
    """Print the module's code instructions at 1 and at ``threads`` threads; return 1 thread's count
    over the busiest thread's at ``threads`` (the most the threads can shorten an inference)."""
    counted = core_split(out, board.name, threads=threads, runs=runs, warmup=warmup)
    one, many = counted.one_thread, counted.split
    print(
        f"threads: module code {one:,.0f} at 1 thread; at {threads}: busiest thread {many.busiest:,.0f}, "
        f"all {many.work:,.0f} ({many.work / one:.3f}x the work), balance {many.balance:.3f}: "
        f"{counted.critical_path_gain:.2f}x shorter critical path"
    )
    return counted.critical_path_gain


def header(board: Board, runs: int, warmup: int, peer: bool) -> None:
    print(f"device:  emulated {board.description}: qemu-aarch64 {qemu_version()} -cpu {board.qemu_cpu}")
    print(f"counted: {runs} inferences after {warmup} warm-up; mptc at 1 TVM thread")
    if peer:
        print(
            f"peer:    {peer_version()} (aarch64 wheel) on source.onnx (ai.mptc layers unpacked to fp32 Conv/Gemm), {PEER_SETTINGS}"
        )


def bench_out(out: str, board_name: str | None, runs: int, warmup: int, peer: bool, threads: int) -> None:
    manifest = read_manifest(out)
    board = BOARDS[board_name or manifest.target.board or "rpi4"]
    print(f"module:  {out} (built for {manifest.target.spec.get('mcpu', '?')}, {manifest.target.name})")
    header(board, runs, warmup, peer)
    start = time.perf_counter()
    result = count(Path(out), board, runs, warmup, peer)
    print(f"took:    {time.perf_counter() - start:.1f} s under qemu")
    print_counts(result)
    if threads > 1:
        thread_gain(Path(out), board, threads, runs, warmup)


def bench_layers(folder: Path, board: Board, runs: int, warmup: int, peer: bool, threads: int) -> None:
    header(board, runs, warmup, peer)
    print(f"layers:  3x3 convs, compiled for {board.name} into {folder / board.name}")
    rows = []
    for layer in LAYERS:
        out = build_layer(layer, board.name, folder / board.name / layer.name)
        result = count(out, board, runs, warmup, peer)
        print(f"\n{layer.name}: {out}")
        print_counts(result)
        gain = thread_gain(out, board, threads, runs, warmup) if threads > 1 else None
        rows.append((layer.name, result, gain))
    gains = f"{f'{threads} threads':>11}" if threads > 1 else ""
    print(f"\n{'core':<12}{'layer':<18}{'mptc':>16}{'onnxruntime':>16}{'ratio':>9}{'NEON cnt':>10}{gains}")
    for name, result, gain in rows:
        mptc = result.mptc if isinstance(result, InstructionComparison) else result
        theirs, ratio = "-", "-"
        if isinstance(result, InstructionComparison):
            theirs, ratio = f"{result.onnxruntime.total:,.0f}", f"{result.ratio:.2f}"
        share = mptc.neon_cnt / mptc.total if mptc.total else 0.0
        row = f"{board.qemu_cpu:<12}{name:<18}{mptc.total:>16,.0f}{theirs:>16}{ratio:>9}{share:>10.1%}"
        print(row + (f"{gain:>10.2f}x" if gain is not None else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", help="an OUT/ folder of `mptc compile --target arm`")
    parser.add_argument("--layers", action="store_true", help="build, compile and count the benchmark layers")
    parser.add_argument("--dir", type=Path, help="with --layers: where to write them (default: a new temp folder)")
    parser.add_argument("--board", choices=list(BOARDS), help="default: the board in OUT/manifest.json (rpi4)")
    parser.add_argument("--runs", type=int, default=10, help="inferences counted (default 10)")
    parser.add_argument("--warmup", type=int, default=1, help="uncounted calls first (default 1)")
    parser.add_argument("--no-peer", dest="peer", action="store_false", help="count the module only")
    parser.add_argument(
        "--threads", type=int, default=1, help="also split the module's work over this many threads (a Pi: 4)"
    )
    args = parser.parse_args()
    if args.layers == (args.out is not None):
        parser.error("give either an OUT/ folder or --layers")
    if args.layers:
        folder = args.dir or Path(tempfile.mkdtemp(prefix="mptc-bench-arm-"))
        bench_layers(folder, BOARDS[args.board or "rpi4"], args.runs, args.warmup, args.peer, args.threads)
    else:
        bench_out(args.out, args.board, args.runs, args.warmup, args.peer, args.threads)


if __name__ == "__main__":
    main()
