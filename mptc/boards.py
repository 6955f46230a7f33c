"""The compile targets and the boards mptc builds for and emulates, defined once.

Plain data (no tvm, no torch): ``targets`` makes TVM target dicts from it, ``deploy.emulator``
starts qemu with it, and every CLI choice lists it in this order::

    rpi4         cortex-a72    +neon                       qemu cortex-a72
    rpi5         cortex-a76    +neon +dotprod +fullfp16    qemu cortex-a76
    jetson-orin  cortex-a78ae  +neon +dotprod +fullfp16    qemu neoverse-n1, GPU sm_87
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TARGETS = ("x86", "arm", "cuda")

_ARMV8_0 = frozenset({"neon", "fp-armv8", "crc", "crypto", "aes", "sha2"})
_ARMV8_2 = _ARMV8_0 | {"v8.2a", "dotprod", "fullfp16", "rcpc", "lse", "rdm", "ras", "ssbs"}


@dataclass(frozen=True)
class Board:
    """A board: its CPU for LLVM, its GPU if it has one, and how qemu emulates its CPU.

    ``features`` are the LLVM ``mattr`` names the emulated core implements; they only serve to
    name the likely culprit when a module dies from an illegal instruction.
    """

    name: str
    description: str
    mcpu: str
    mattr: tuple[str, ...]
    num_cores: int
    qemu_cpu: str
    features: frozenset[str]
    gpu_arch: str | None = None

    def llvm_cpu(self) -> dict[str, Any]:
        """The CPU part of an LLVM target dict: ``mcpu``, ``mattr`` and ``num-cores``."""
        return {"mcpu": self.mcpu, "mattr": list(self.mattr), "num-cores": self.num_cores}


BOARDS: dict[str, Board] = {
    board.name: board
    for board in (
        Board("rpi4", "Raspberry Pi 4 (Cortex-A72)", "cortex-a72", ("+neon",), 4, "cortex-a72", _ARMV8_0),
        Board(
            "rpi5",
            "Raspberry Pi 5 (Cortex-A76)",
            "cortex-a76",
            ("+neon", "+dotprod", "+fullfp16"),
            4,
            "cortex-a76",
            _ARMV8_2,
        ),
        # QEMU has no Cortex-A78AE; the Neoverse-N1 is the closest core it models (ARMv8.2 + dotprod).
        Board(
            "jetson-orin",
            "Jetson Orin CPU (Cortex-A78AE, emulated as Neoverse-N1)",
            "cortex-a78ae",
            ("+neon", "+dotprod", "+fullfp16"),
            6,
            "neoverse-n1",
            _ARMV8_2,
            gpu_arch="sm_87",
        ),
    )
}
DEFAULT_ARM_BOARD = "rpi4"
