"""Read and check the folder `mptc compile` writes, before anything is sent to a device.

OUT/ holds ``module.so`` (a Relax VM executable), ``manifest.json`` (target, board, input and
output signature) and ``reference.npz`` (``x`` a sample input, ``y`` the expected output). The
architecture a module runs on is read from the ELF header of ``module.so`` itself: it is what the
device's loader will check, and a wrong one otherwise surfaces as a misleading "No such file".
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mptc.errors import InputError

MODULE = "module.so"
MANIFEST = "manifest.json"
REFERENCE = "reference.npz"

# ELF e_machine values of the architectures mptc targets.
_ELF_MACHINES = {62: "x86_64", 183: "aarch64", 40: "arm"}


@dataclass(frozen=True)
class CompiledModel:
    """A compiled model as `mptc compile` leaves it in OUT/."""

    out_dir: Path
    module_path: Path
    manifest: dict[str, Any]
    arch: str
    x: np.ndarray
    y: np.ndarray

    @property
    def target(self) -> dict[str, Any]:
        """The TVM target dict the module was built for."""
        return tvm_target_of(self.manifest)

    @property
    def board(self) -> str | None:
        return self.manifest.get("board") or self.manifest["target"].get("board")

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


def elf_arch(path: Path) -> str:
    """Architecture of a shared library, from its ELF header."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(20)
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror}") from e
    if len(header) < 20 or header[:4] != b"\x7fELF":
        raise InputError(f"{path} is not a shared library (no ELF header): was it written by `mptc compile`?")
    byteorder = "little" if header[5] == 1 else "big"
    machine = int.from_bytes(header[18:20], byteorder)
    return _ELF_MACHINES.get(machine, f"ELF machine {machine}")


def load_compiled(out_dir: str | Path) -> CompiledModel:
    """Load OUT/ and check that its three files agree with each other."""
    out = Path(out_dir)
    if not out.is_dir():
        raise InputError(f"{out} is not a folder: expected the output folder of `mptc compile`")
    missing = [name for name in (MODULE, MANIFEST, REFERENCE) if not (out / name).is_file()]
    if missing:
        raise InputError(f"{out} lacks {', '.join(missing)}: expected the output folder of `mptc compile`")
    manifest = _read_manifest(out / MANIFEST)
    x, y = _read_reference(out / REFERENCE)
    signature = manifest["input"]
    if list(x.shape) != list(signature["shape"]) or str(x.dtype) != signature["dtype"]:
        raise InputError(
            f"{out / REFERENCE}: input x is {x.dtype}{list(x.shape)} but the manifest expects "
            f"{signature['dtype']}{list(signature['shape'])}"
        )
    if list(y.shape) != list(manifest["output"]["shape"]):
        raise InputError(
            f"{out / REFERENCE}: output y has shape {list(y.shape)} but the manifest says "
            f"{list(manifest['output']['shape'])}"
        )
    arch = elf_arch(out / MODULE)
    declared = _target_arch(tvm_target_of(manifest))
    if declared is not None and declared != arch:
        raise InputError(
            f"{out / MODULE} is an {arch} library but the manifest's target is {declared}: "
            "the folder mixes two builds, compile again"
        )
    return CompiledModel(out, out / MODULE, manifest, arch, x, y)


def tvm_target_of(manifest: dict[str, Any]) -> dict[str, Any]:
    """The TVM target dict: ``target`` itself, or its ``spec`` when ``target`` also names the
    family and board (``{"name", "family", "board", "spec"}``, as `mptc compile` writes it)."""
    target = manifest["target"]
    return target["spec"] if isinstance(target.get("spec"), dict) else target


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read {path}: {e}") from e
    for key in ("target", "input", "output"):
        if key not in manifest:
            raise InputError(f"{path} has no '{key}' entry")
    if not isinstance(manifest["target"], dict):
        raise InputError(f"{path}: 'target' must be a TVM target dict, got {manifest['target']!r}")
    for key in ("shape", "dtype"):
        if key not in manifest["input"]:
            raise InputError(f"{path}: 'input' has no '{key}'")
    if "shape" not in manifest["output"]:
        raise InputError(f"{path}: 'output' has no 'shape'")
    return manifest


def _read_reference(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as arrays:
            return arrays["x"], arrays["y"]
    except KeyError as e:
        raise InputError(f"{path} must hold arrays 'x' (sample input) and 'y' (expected output)") from e
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read {path}: {e}") from e


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
