"""Guest instructions per inference of an aarch64 module, counted under qemu: a board-free speed figure.

Why: emulated latency is 40-60x a board's and noisy, but the number of instructions the guest
executes is exact and repeatable. A qemu TCG plugin (``scripts/qemu/insn_count.c``, built by
``scripts/setup_arm_emulator.sh`` into ``<arm root>/lib/libinsn_count.so``) counts every executed
guest instruction. One emulated process loads OUT/module.so, calls ``vm["main"]`` on the reference
input ``1 + warmup`` times (first-call set-up, and Python 3.11 specialising the loop), then counts
two regions, each opened and closed by a marker syscall (``close`` of a descriptor numbered
``MARK_START`` / ``MARK_STOP``): the same loop run ``runs`` and ``2 * runs`` times. At exit the
plugin writes each region's and the whole process's counts; subtracting cancels the markers' and
the loop's fixed cost::

    instructions per inference = (count(2 * runs calls) - count(runs calls)) / runs

Subtracting whole-process counts of a ``warmup`` and a ``warmup + runs`` process instead does not
repeat: the interpreter's start-up (about 11 G instructions) varies by millions from run to run,
more than a small model's inference. The region count repeats exactly.

TVM runs at one thread (``TVM_NUM_THREADS=1``): the plugin's counters are not atomic, and one
thread is also the figure to compare with a single-threaded peer. ``PYTHONHASHSEED`` is fixed and
the garbage collector is off inside the regions, so they take the same paths every time.
The counts are instructions, not cycles: they rank kernels on one core model, they do not give
its latency.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mptc.artifact import MODULE_FILE, REFERENCE_FILE
from mptc.deploy.emulator import SETUP_COMMAND, arm_root, get_board, launcher
from mptc.errors import DeviceError, InputError

PLUGIN_FILE = "lib/libinsn_count.so"
TIMEOUT_S = 600.0
"""Seconds one emulated process may take (a large model at many runs is slow under qemu)."""

CLASSES = ("total", "neon_cnt", "loads_stores", "fp_simd")
"""The plugin's counters, in the order of its output lines (see ``scripts/qemu/insn_count.c``)."""
MARK_START, MARK_STOP = 0x6D707400, 0x6D707401
"""Descriptor numbers whose ``close`` opens / closes the plugin's counting region (as in insn_count.c)."""

_GUEST = f"""\
import sys
sys.modules["torch"] = None  # tvm_ffi imports torch if it can; never needed here
import numpy as np
import tvm
import tvm.runtime.vm
import gc
import os
module, reference, warmup, runs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
dev = tvm.cpu()
vm = tvm.runtime.vm.VirtualMachine(tvm.runtime.load_module(module), dev)
with np.load(reference) as arrays:
    x, y = tvm.runtime.tensor(arrays["x"], dev), arrays["y"]
if not np.allclose(vm["main"](x).numpy(), y, rtol=1e-3, atol=1e-3):
    sys.exit("output differs from reference.npz")
main = vm["main"]


def loop(calls):
    for _ in range(calls):
        main(x)



def mark(fd):
    try:
        os.close(fd)
    except OSError:
        pass


loop(warmup)  # also lets the interpreter specialise the loop before it is counted
gc.disable()
for calls in (runs, 2 * runs):
    mark({MARK_START})
    loop(calls)
    mark({MARK_STOP})
"""


@dataclass(frozen=True)
class InstructionCounts:
    """Guest instructions per inference, in total and by class (fractions of one inference's count).

    ``neon_cnt`` counts CNT (vector), the popcount of the binary kernels; ``loads_stores`` the A64
    loads and stores group; ``fp_simd`` scalar FP and Advanced SIMD data processing (CNT excluded).
    """

    total: float
    neon_cnt: float
    loads_stores: float
    fp_simd: float


def plugin() -> Path:
    """The instruction-counting plugin; a clear error when the set-up has not built it."""
    path = arm_root() / PLUGIN_FILE
    if not path.is_file():
        raise DeviceError(f"the qemu instruction-counting plugin is missing ({path}): run `{SETUP_COMMAND}`")
    return path


def count_instructions(out_dir: str | Path, board: str, *, runs: int, warmup: int) -> dict[str, list[tuple[int, ...]]]:
    """Guest instructions of one emulated process that runs ``OUT/module.so`` ``warmup + runs`` times.

    Returns the plugin's counters, each a tuple in :data:`CLASSES` order: under ``"region"`` one
    per counted region (``runs`` calls, then ``2 * runs``), under ``"total"`` one for the whole process.
    """
    out = Path(out_dir)
    for name in (MODULE_FILE, REFERENCE_FILE):
        if not (out / name).is_file():
            raise InputError(f"{out} has no {name}: expected an OUT/ folder written by `mptc compile --target arm`")
    qemu_cpu = get_board(board).qemu_cpu
    python, lib = launcher(), plugin()
    with tempfile.TemporaryDirectory(prefix="mptc-insn-") as tmp:
        counts = Path(tmp) / "counts"
        env = {
            **os.environ,
            "QEMU_CPU": qemu_cpu,
            # qemu-user reads QEMU_PLUGIN as its -plugin option; the launcher passes it through.
            "QEMU_PLUGIN": f"{lib},outfile={counts}",
            "TVM_NUM_THREADS": "1",
            "PYTHONHASHSEED": "0",
        }
        command = [str(python), "-c", _GUEST, str(out / MODULE_FILE), str(out / REFERENCE_FILE)]
        command += [str(warmup), str(runs)]
        try:
            result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired as e:
            raise DeviceError(f"counting instructions of {out} on emulated {board} took over {TIMEOUT_S:.0f} s") from e
        if result.returncode != 0 or not counts.is_file():
            tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise DeviceError(
                f"emulated {board} ({qemu_cpu}) failed to run {out / MODULE_FILE} (exit {result.returncode}): {tail}"
            )
        text = counts.read_text()
    found: dict[str, list[tuple[int, ...]]] = {"region": [], "total": []}
    for line in text.splitlines():
        name, *fields = line.split()
        if name not in found or len(fields) != len(CLASSES):
            raise DeviceError(
                f"the instruction-counting plugin wrote {line!r}: expected 'region|total' and {len(CLASSES)} numbers"
            )
        found[name].append(tuple(int(field) for field in fields))
    if len(found["region"]) != 2 or len(found["total"]) != 1:
        raise DeviceError(
            f"the instruction-counting plugin saw {len(found['region'])} marked regions, expected 2: "
            f"is {plugin()} built from scripts/qemu/insn_count.c?"
        )
    return found


def instruction_counts(out_dir: str | Path, board: str, *, runs: int = 10, warmup: int = 1) -> InstructionCounts:
    """Guest instructions per inference of ``OUT/module.so`` on emulated ``board``, by class.

    Args:
        out_dir: an OUT/ folder of an aarch64 build (module.so and reference.npz).
        board: the board whose core qemu emulates (``rpi4``, ``rpi5``, ``jetson-orin``).
        runs: the inferences counted (the difference between the plugin's two regions).
        warmup: calls made first, outside the regions, so one-time set-up is not counted; at least 1.
    """
    if runs < 1 or warmup < 1:
        raise InputError(f"runs and warmup must be at least 1: got runs={runs}, warmup={warmup}")
    once, twice = count_instructions(out_dir, board, runs=runs, warmup=warmup)["region"]
    return InstructionCounts(*((b - a) / runs for a, b in zip(once, twice, strict=True)))


def instructions_per_inference(out_dir: str | Path, board: str, *, runs: int = 10, warmup: int = 1) -> float:
    """Guest instructions per inference of ``OUT/module.so`` on emulated ``board`` (see the module doc)."""
    return instruction_counts(out_dir, board, runs=runs, warmup=warmup).total
