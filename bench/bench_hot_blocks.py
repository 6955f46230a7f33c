"""The blocks of an aarch64 module's code that execute the most guest instructions per inference.

``bench_arm.py`` counts a module's instructions and ``mptc profile --instructions --per-layer``
splits them by kernel call; this splits them by translated block (qemu's unit: straight-line code
up to a branch), so a kernel's cost can be read off its assembly: the popcount loop, the
epilogue, a sign pack. The counts come from the qemu plugin (``instructions.block_counts``, at one
TVM thread), the code from binutils' disassembly of OUT/module.so (``bench_mca.disassemble``).

    .venv/bin/python bench/bench_hot_blocks.py OUT/ [--board rpi4] [--top 15] [--show 3]

Needs the emulated boards (``make arm-emulator``) and binutils for aarch64.
"""

from __future__ import annotations

import argparse
import collections
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_mca import Instruction, disassemble  # noqa: E402

from mptc.artifact import MODULE_FILE, read_manifest  # noqa: E402
from mptc.deploy.instructions import block_counts  # noqa: E402

PAGE = 4096
PT_LOAD, PF_X = 1, 1


def code_base(module: Path) -> int:
    """The link-time address of the module's executable mapping's first byte (its executable
    ``PT_LOAD`` segment's address, rounded down to a page, as the loader maps it)."""
    data = module.read_bytes()
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(phnum):
        kind, flags, _, vaddr = struct.unpack_from("<IIQQ", data, phoff + i * phentsize)
        if kind == PT_LOAD and flags & PF_X:
            return vaddr & ~(PAGE - 1)
    raise ValueError(f"{module} has no executable segment")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="an OUT/ folder of `mptc compile --target arm`")
    parser.add_argument("--board", help="default: the board OUT/ was compiled for")
    parser.add_argument("--runs", type=int, default=2, help="inferences counted (default 2; the counts are exact)")
    parser.add_argument("--top", type=int, default=15, help="blocks listed, most instructions first (default 15)")
    parser.add_argument("--show", type=int, default=0, help="print the assembly of the first SHOW blocks")
    args = parser.parse_args()
    out = Path(args.out)
    board = args.board or read_manifest(out).target.board or "rpi4"
    module = out / MODULE_FILE
    blocks = block_counts(out, board, runs=args.runs)
    base = code_base(module)
    functions = disassemble(module)
    by_address: dict[int, tuple[str, Instruction]] = {
        ins.address: (function, ins) for function, body in functions.items() for ins in body
    }
    total = sum(block.per_inference for block in blocks)
    print(f"module: {module} on emulated {board}: {total:,.0f} instructions per inference in its code, 1 thread")
    print(f"{'instructions':>13} {'share':>6} {'runs':>9} {'size':>5}  function + offset: most frequent mnemonics")
    for rank, block in enumerate(blocks[: args.top]):
        start = base + block.offset
        body = [by_address[a][1] for a in range(start, start + 4 * block.instructions, 4) if a in by_address]
        function = by_address[start][0] if start in by_address else "?"
        first = functions[function][0].address if function in functions else start
        common = collections.Counter(ins.mnemonic for ins in body).most_common(5)
        print(
            f"{block.per_inference:>13,.0f} {block.per_inference / total:>6.1%} {block.executions:>9,.0f} "
            f"{block.instructions:>5}  {function[:48]}+{start - first:#x}: "
            + ", ".join(f"{name} {count}" for name, count in common)
        )
        if rank < args.show:
            for ins in body:
                print(f"        {ins.mnemonic} {ins.operands}")


if __name__ == "__main__":
    main()
