"""Cycle estimate of an aarch64 module's hot loops with llvm-mca, against the core's popcount bound.

Instruction counts (``bench_arm.py``) say how much work a kernel does; this says how fast a core
could run it. The module is disassembled (binutils' ``aarch64-linux-gnu-objdump``), its innermost
loops found (a backward branch to an address with no other backward branch inside), and each loop
that counts bits (NEON ``cnt``) or multiplies floats (``fmla``/``fmul``/``fadd``) is given to
``llvm-mca -mcpu=CORE`` as a steady-state block. A popcount loop is set against two bounds on that
core: its ``cnt`` instructions alone (the popcounts it cannot avoid), and as many masked XNOR-popcount
steps with operands in registers (``eor``, ``and``, ``cnt``, ``uadalp``: the vector work no form of the
step avoids, all on the core's SIMD pipes). The report gives cycles per iteration, cycles per ``cnt``
and each bound's share of the loop ("X % of the bound").

    .venv/bin/python bench/bench_mca.py OUT/ [--cpu cortex-a72] [--top 5]

Needs ``llvm-mca`` (Debian ``llvm``) and binutils for aarch64 (``make arm-emulator`` installs them).
An estimate of a model, not a measurement: llvm-mca knows the core's pipes and latencies, not its
caches or the branch predictor; and only of the cores its LLVM has a scheduling model for (LLVM
14: cortex-a72 has one; cortex-a76 is accepted but modelled generically).
"""

from __future__ import annotations

import argparse
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from mptc.artifact import MODULE_FILE, read_manifest

_LINE = re.compile(r"^\s*([0-9a-f]+):\s+(\S+)\s*(.*?)\s*(?://.*)?$")
_BRANCH = re.compile(r"^(b(\.\w+)?|cbn?z|tbn?z)$")
ITERATIONS = 200


@dataclass(frozen=True)
class Instruction:
    address: int
    mnemonic: str
    operands: str


@dataclass(frozen=True)
class Loop:
    function: str
    body: list[Instruction]

    def count(self, *mnemonics: str) -> int:
        return sum(i.mnemonic in mnemonics for i in self.body)


def disassemble(module: Path) -> dict[str, list[Instruction]]:
    """Instructions by function symbol."""
    text = subprocess.run(
        ["aarch64-linux-gnu-objdump", "-d", "--no-show-raw-insn", str(module)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    functions: dict[str, list[Instruction]] = {}
    current: list[Instruction] = []
    for line in text.splitlines():
        header = re.match(r"^[0-9a-f]+ <(.+)>:$", line)
        if header:
            current = functions.setdefault(header.group(1), [])
            continue
        match = _LINE.match(line)
        if match and not match.group(2).startswith("."):
            current.append(Instruction(int(match.group(1), 16), match.group(2), match.group(3)))
    return functions


def innermost_loops(functions: dict[str, list[Instruction]]) -> list[Loop]:
    """Every backward branch's body that holds no other backward branch."""
    loops = []
    for name, body in functions.items():
        spans = []
        for i, ins in enumerate(body):
            target = _target(ins)
            if target is not None and target <= ins.address:
                start = next((j for j, other in enumerate(body) if other.address == target), None)
                if start is not None:
                    spans.append((start, i))
        for start, end in spans:
            if not any(s > start and e < end or s >= start and e < end and (s, e) != (start, end) for s, e in spans):
                loops.append(Loop(name, body[start : end + 1]))
    return loops


def _target(ins: Instruction) -> int | None:
    if not _BRANCH.match(ins.mnemonic):
        return None
    found = re.search(r"\b([0-9a-f]+) <", ins.operands)
    return int(found.group(1), 16) if found else None


def mca_cycles(lines: list[str], cpu: str) -> float:
    """llvm-mca's cycles per iteration of the block ``lines`` (a loop body) on ``cpu``."""
    source = ".Lloop:\n" + "\n".join(lines) + "\n"
    out = subprocess.run(
        ["llvm-mca", "-mtriple=aarch64", f"-mcpu={cpu}", f"-iterations={ITERATIONS}"],
        input=source,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    total = re.search(r"Total Cycles:\s+(\d+)", out)
    if total is None:
        raise RuntimeError(f"llvm-mca printed no cycle count:\n{out[:400]}")
    return int(total.group(1)) / ITERATIONS


def assembly(loop: Loop) -> list[str]:
    """The loop body as llvm-mca reads it: branches to the loop's own label, others dropped."""
    lines = []
    for ins in loop.body:
        if _BRANCH.match(ins.mnemonic):
            if ins is loop.body[-1]:
                operands = re.sub(r"\b[0-9a-f]+ <[^>]*>", ".Lloop", ins.operands)
                lines.append(f"{ins.mnemonic} {operands}")
            continue
        lines.append(f"{ins.mnemonic} {re.sub(r' <[^>]*>', '', ins.operands)}".strip())
    return lines


def popcount_bound(cnts: int, cpu: str) -> float:
    """Cycles ``cnts`` independent ``cnt.16b`` take on ``cpu`` (the popcounts a loop cannot avoid)."""
    return mca_cycles([f"cnt v{i % 30}.16b, v{(i + 1) % 30}.16b" for i in range(cnts)], cpu)


def step_bound(cnts: int, cpu: str) -> float:
    """Cycles ``cnts`` masked XNOR-popcount steps take on ``cpu`` with their operands in registers:
    per vector of words the ``eor``, ``and``, ``cnt`` and ``uadalp`` no form of the step avoids,
    into 16 accumulators, and no load or address: the ceiling of a popcount loop."""
    lines = []
    for i in range(cnts):
        temp, acc = f"v{16 + i % 13}", f"v{i % 16}"
        lines += [
            f"eor {temp}.16b, v29.16b, v30.16b",
            f"and {temp}.16b, {temp}.16b, v31.16b",
            f"cnt {temp}.16b, {temp}.16b",
            f"uadalp {acc}.8h, {temp}.16b",
        ]
    return mca_cycles(lines, cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="an OUT/ folder of `mptc compile --target arm`")
    parser.add_argument("--cpu", help="llvm-mca -mcpu (default: the mcpu OUT/ was built for)")
    parser.add_argument("--top", type=int, default=5, help="loops shown, most arithmetic first (default 5)")
    args = parser.parse_args()
    manifest = read_manifest(args.out)
    cpu = args.cpu or manifest.target.spec.get("mcpu", "cortex-a72")
    loops = innermost_loops(disassemble(Path(args.out) / MODULE_FILE))
    unique = {tuple(assembly(loop)): loop for loop in loops}  # TVM emits some kernels under two symbols
    work = [loop for loop in unique.values() if loop.count("cnt", "fmla", "fmul", "fadd", "fsub")]
    work.sort(key=lambda loop: -loop.count("cnt", "fmla", "fmul", "fadd", "fsub"))
    print(f"module: {args.out}/{MODULE_FILE}, llvm-mca -mcpu={cpu}, {ITERATIONS} iterations per loop")
    print(
        f"{'function':<44}{'insns':>6}{'cnt':>5}{'fp':>5}{'cycles/iter':>13}{'per cnt':>9}"
        f"{'cnt bound':>11}{'of it':>7}{'step bound':>12}{'of it':>7}"
    )
    for loop in work[: args.top]:
        cycles = mca_cycles(assembly(loop), cpu)
        cnts, fp = loop.count("cnt"), loop.count("fmla", "fmul", "fadd", "fsub")
        row = f"{loop.function[:43]:<44}{len(loop.body):>6}{cnts:>5}{fp:>5}{cycles:>13.2f}"
        if cnts:
            popcounts, steps = popcount_bound(cnts, cpu), step_bound(cnts, cpu)
            row += (
                f"{cycles / cnts:>9.2f}{popcounts:>11.2f}{popcounts / cycles:>7.0%}{steps:>12.2f}{steps / cycles:>7.0%}"
            )
        print(row)


if __name__ == "__main__":
    main()
