"""Guest instructions per inference of an aarch64 build, counted under qemu (no board needed).

Runs OUT/module.so on the reference input in the emulated board's core (QEMU_CPU of the board:
rpi4 -> cortex-a72, rpi5 -> cortex-a76, jetson-orin -> neoverse-n1) at one TVM thread, with the
``insn_count`` TCG plugin (see ``mptc.deploy.instructions``), and prints the count per inference,
in total and by class. A count, not a time: it repeats exactly for the same build and settings.

    .venv/bin/python bench/bench_arm.py OUT/ [--board rpi4] [--runs 10] [--warmup 1]

The board defaults to the one in OUT/manifest.json. Needs `make arm-emulator`.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import time

from mptc.artifact import read_manifest
from mptc.boards import BOARDS
from mptc.deploy.instructions import instruction_counts


def qemu_version() -> str:
    """``qemu-aarch64 --version``'s version number, e.g. ``7.2.22``."""
    text = subprocess.run(["qemu-aarch64", "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"version (\S+)", text)
    return match.group(1) if match else text.splitlines()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="an OUT/ folder of `mptc compile --target arm`")
    parser.add_argument("--board", choices=list(BOARDS), help="default: the board in OUT/manifest.json")
    parser.add_argument("--runs", type=int, default=10, help="inferences counted (default 10)")
    parser.add_argument("--warmup", type=int, default=1, help="uncounted calls first (default 1)")
    args = parser.parse_args()

    manifest = read_manifest(args.out)
    board = BOARDS[args.board or manifest.target.board or "rpi4"]
    start = time.perf_counter()
    counts = instruction_counts(args.out, board.name, runs=args.runs, warmup=args.warmup)
    elapsed = time.perf_counter() - start

    print(f"module:  {args.out} (built for {manifest.target.spec.get('mcpu', '?')}, {manifest.target.name})")
    print(f"device:  emulated {board.description}: qemu-aarch64 {qemu_version()} -cpu {board.qemu_cpu}")
    print(f"counted: {args.runs} inferences after {args.warmup} warm-up, 1 TVM thread ({elapsed:.1f} s)")
    print(f"{'instructions per inference':<28}{counts.total:>16,.1f}")
    for name, label in (("neon_cnt", "  NEON cnt"), ("loads_stores", "  loads/stores"), ("fp_simd", "  FP/SIMD")):
        value = getattr(counts, name)
        share = value / counts.total if counts.total else 0.0
        print(f"{label:<28}{value:>16,.1f}  ({share:6.1%})")


if __name__ == "__main__":
    main()
