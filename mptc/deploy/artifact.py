"""Read and check the folder `mptc compile` writes, before anything is sent to a device.

OUT/ holds ``module.so`` (a Relax VM executable), ``manifest.json`` (target, board, input and
output signature) and ``reference.npz`` (``x`` a sample input, ``y`` the expected output), laid
out and parsed by :mod:`mptc.artifact`; here the three are checked against each other. The
architecture a module runs on is read from the ELF header of ``module.so`` itself: it is what the
device's loader will check, and a wrong one otherwise surfaces as a misleading "No such file".
Last, ``module.so`` must have the sha256 the manifest records: it is loaded next, and loading a
library runs its code.
"""

from __future__ import annotations

import hashlib
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mptc.artifact import (
    MANIFEST_FILE,
    MAX_FILE_BYTES,
    MODULE_FILE,
    REFERENCE_FILE,
    REQUIRED_FILES,
    Manifest,
    read_manifest,
    read_reference,
)
from mptc.errors import InputError
from mptc.io import read_regular_file, write_bytes


def load_library(path: str | Path) -> Any:
    """``tvm.runtime.load_module`` of a module library, loaded from a private copy.

    The dynamic loader keeps one library per path for the life of the process: a ``module.so``
    compiled again in place would load as the old code (a notebook that compiles and profiles
    twice, a sweep that recomputes a point). A copy in a folder of its own is a path never loaded
    before; it is deleted once loaded (the mapping outlives the file)."""
    import tempfile

    import tvm

    data = read_regular_file(path, MAX_FILE_BYTES, MODULE_FILE)
    with tempfile.TemporaryDirectory(prefix="mptc-module-") as folder:
        copy = Path(folder) / MODULE_FILE
        write_bytes(copy, data)
        return tvm.runtime.load_module(str(copy))


# ELF e_machine values of the architectures mptc targets.
_ELF_MACHINES = {62: "x86_64", 183: "aarch64", 40: "arm"}


@dataclass(frozen=True)
class CompiledModel:
    """A compiled model as `mptc compile` leaves it in OUT/."""

    out_dir: Path
    module_path: Path
    manifest: Manifest
    arch: str
    x: np.ndarray
    y: np.ndarray

    @property
    def target(self) -> dict[str, Any]:
        """The TVM target dict the module was built for."""
        return self.manifest.target.spec

    @property
    def board(self) -> str | None:
        return self.manifest.target.board

    @property
    def device_kind(self) -> str:
        """``cuda`` for a GPU module (e.g. Jetson Orin's GPU), else ``cpu``."""
        return "cuda" if self.target.get("kind") == "cuda" else "cpu"

    def target_summary(self) -> str:
        """The target's CPU in one phrase, for error messages: ``mcpu=cortex-a76 mattr=+neon,+dotprod``."""
        cpu_target = self.target.get("host", self.target) if self.device_kind == "cuda" else self.target
        mattr = cpu_target.get("mattr") or []
        parts = [f"mcpu={cpu_target['mcpu']}"] if cpu_target.get("mcpu") else []
        if mattr:
            parts.append("mattr=" + ",".join(mattr))
        return " ".join(parts) or "the default CPU"


def host_arch() -> str:
    """This machine's architecture in ELF naming (``x86_64``, ``aarch64``)."""
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


def elf_arch(path: Path, data: bytes | None = None) -> str:
    """Architecture of a shared library, from its ELF header (``data``: its bytes, if already read);
    a truncated library is refused."""
    if data is None:
        data = _read(path)
    if len(data) < 64 or data[:4] != b"\x7fELF" or data[4] not in (1, 2):
        raise InputError(f"{path} is not a shared library (no ELF header): was it written by `mptc compile`?")
    end = _elf_extent(data)
    if end > len(data):
        # dlopen maps a truncated library and the first touch past its end is SIGBUS: check here
        raise InputError(f"{path} is truncated ({len(data):,} bytes, its ELF headers describe {end:,}): compile again")
    machine = int.from_bytes(data[18:20], "little" if data[5] == 1 else "big")
    return _ELF_MACHINES.get(machine, f"ELF machine {machine}")


def _elf_extent(data: bytes) -> int:
    """Bytes an ELF file must have: the end of its header tables and of every loaded segment."""
    wide = data[4] == 2
    order: Literal["little", "big"] = "little" if data[5] == 1 else "big"

    def field(offset: int, size: int) -> int:
        return int.from_bytes(data[offset : offset + size], order)

    phoff, shoff = (field(0x20, 8), field(0x28, 8)) if wide else (field(0x1C, 4), field(0x20, 4))
    phentsize, phnum, shentsize, shnum = (
        field(o, 2) for o in ((0x36, 0x38, 0x3A, 0x3C) if wide else (0x2A, 0x2C, 0x2E, 0x30))
    )
    end = max(phoff + phnum * phentsize, shoff + shnum * shentsize)
    for entry in range(phoff, min(phoff + phnum * phentsize, len(data)), max(phentsize, 1)):
        if entry + phentsize <= len(data) and field(entry, 4) == 1:  # PT_LOAD
            offset, filesz = (
                (field(entry + 8, 8), field(entry + 32, 8)) if wide else (field(entry + 4, 4), field(entry + 16, 4))
            )
            end = max(end, offset + filesz)
    return end


def load_compiled(out_dir: str | Path) -> CompiledModel:
    """Load OUT/ and check that its three files agree with each other."""
    out = Path(out_dir)
    if not out.is_dir():
        raise InputError(f"{out} is not a folder: expected the output folder of `mptc compile`")
    missing = [name for name in REQUIRED_FILES if not (out / name).is_file()]
    if missing:
        raise InputError(f"{out} lacks {', '.join(missing)}: expected the output folder of `mptc compile`")
    manifest = read_manifest(out)
    x, y = read_reference(out)
    signature = manifest.input
    if list(x.shape) != signature.shape or str(x.dtype) != signature.dtype:
        raise InputError(
            f"{out / REFERENCE_FILE}: input x is {x.dtype}{list(x.shape)} but the manifest expects "
            f"{signature.dtype}{signature.shape}"
        )
    if list(y.shape) != manifest.output.shape:
        raise InputError(
            f"{out / REFERENCE_FILE}: output y has shape {list(y.shape)} but the manifest says {manifest.output.shape}"
        )
    module = _read(out / MODULE_FILE)
    arch = elf_arch(out / MODULE_FILE, module)
    declared = _target_arch(manifest.target.spec)
    if declared is not None and declared != arch:
        raise InputError(
            f"{out / MODULE_FILE} is an {arch} library but the manifest's target is {declared}: "
            "the folder mixes two builds, compile again"
        )
    _check_sha256(out, manifest, module)
    return CompiledModel(out, out / MODULE_FILE, manifest, arch, x, y)


def _read(path: Path) -> bytes:
    return read_regular_file(path, MAX_FILE_BYTES, "module")


def _check_sha256(out: Path, manifest: Manifest, module: bytes) -> None:
    """Refuse a ``module.so`` that is not the one its manifest describes: it is loaded next, and
    loading a library runs its code."""
    if manifest.module_sha256 is None:
        raise InputError(
            f"{out / MANIFEST_FILE} records no sha256 of {MODULE_FILE} (the folder was compiled by an older "
            "mptc): recompile"
        )
    digest = hashlib.sha256(module).hexdigest()
    if digest != manifest.module_sha256:
        raise InputError(
            f"{out / MODULE_FILE} does not match its manifest (sha256 {digest[:12]}..., the manifest says "
            f"{manifest.module_sha256[:12]}...): recompile"
        )


def _target_arch(target: dict[str, Any]) -> str | None:
    """Architecture named by a target's mtriple (a CUDA target's host for GPU modules), if any."""
    cpu_target = target.get("host", {}) if target.get("kind") == "cuda" else target
    triple = cpu_target.get("mtriple") if isinstance(cpu_target, dict) else None
    if not triple:
        return None
    arch = triple.split("-")[0]
    if arch.startswith(("armv", "thumb")):
        return "arm"
    return {"arm64": "aarch64", "amd64": "x86_64"}.get(arch, arch)
