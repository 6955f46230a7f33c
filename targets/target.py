"""Compile targets: ``x86`` (this host), ``arm`` (a board's CPU), ``cuda`` (a GPU), as TVM target dicts.

TVM 0.27 takes targets as JSON dicts (the old ``"llvm -mtriple=..."`` strings are refused), and a
misspelt ``mcpu`` only logs, so the dicts are made here, once, from the boards of
:mod:`mptc.boards`: an arm target is the board's CPU, a cuda target the board's GPU with that CPU
as host.

The x86 target is the build host: its LLVM CPU name, and the kernel tiles chosen by whether it
has AVX-512 VPOPCNTDQ (vector popcount) or only AVX2.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tvm
from tvm.target import codegen

from mptc.boards import BOARDS, DEFAULT_ARM_BOARD, TARGETS
from mptc.errors import InputError, UnsupportedError
from mptc.hostinfo import cpuinfo
from mptc.io import read_regular_file

AARCH64_TRIPLE = "aarch64-linux-gnu"
CUDA_DEFAULT_ARCH = "sm_90"
CPU_TRIPLES = {"x86": ("x86_64",), "arm": ("aarch64",)}
"""LLVM triple prefixes of the CPU families the schedules handle (a dict without one is this host)."""
MAX_TARGET_JSON_BYTES = 1 << 20


@dataclass(frozen=True)
class CompileTarget:
    """A resolved target: its schedule family, the board (if any) and the TVM target dict."""

    family: str  # "x86" | "arm" | "cuda": which ``targets.schedules`` module schedules the kernels
    spec: dict[str, Any]
    board: str | None = None

    def tvm_target(self) -> tvm.target.Target:
        spec = dict(self.spec)
        host = spec.pop("host", None)
        return tvm.target.Target(spec, host=host) if host is not None else tvm.target.Target(spec)

    @property
    def has_avx512_popcount(self) -> bool:
        """Whether an x86 target's CPU has AVX-512 VPOPCNTDQ (vector popcount on zmm words)."""
        return self.family == "x86" and "avx512vpopcntdq" in x86_features(self.spec.get("mcpu"))

    @property
    def has_avx512_vnni(self) -> bool:
        """Whether an x86 target's CPU has AVX-512 VNNI (``vpdpbusd``: uint8 x int8 dot products)."""
        return self.family == "x86" and {"avx512f", "avx512vnni"} <= x86_features(self.spec.get("mcpu"))


def resolve_target(target: str, board: str | None = None, target_json: str | Path | None = None) -> CompileTarget:
    """Turn ``--target`` / ``--board`` / ``--target-json`` into a :class:`CompileTarget`.

    Raises:
        UnsupportedError: an unknown target or board, or a board the target cannot have.
        InputError: an unreadable ``--target-json`` file, or one whose kind contradicts ``target``.
    """
    if target not in TARGETS:
        raise UnsupportedError(f"unknown target {target!r}: expected one of {', '.join(TARGETS)}")
    if target_json is not None:
        return _from_json(target, board, Path(target_json))
    if board is not None and board not in BOARDS:
        raise UnsupportedError(f"unknown board {board!r} for target {target!r}: expected one of {', '.join(BOARDS)}")
    if target == "x86":
        if board is not None:
            raise UnsupportedError(f"board {board!r} is not an x86 machine: use --target arm or cuda")
        return CompileTarget("x86", host_spec())
    if target == "arm":
        return CompileTarget("arm", arm_spec(board or DEFAULT_ARM_BOARD), board or DEFAULT_ARM_BOARD)
    if board is None:
        return CompileTarget("cuda", {"kind": "cuda", "arch": CUDA_DEFAULT_ARCH, "host": host_spec()})
    gpu_arch = BOARDS[board].gpu_arch
    if gpu_arch is None:
        gpu_boards = [name for name, known in BOARDS.items() if known.gpu_arch is not None]
        raise UnsupportedError(f"board {board!r} has no CUDA GPU: expected one of {', '.join(gpu_boards)}")
    return CompileTarget("cuda", {"kind": "cuda", "arch": gpu_arch, "host": arm_spec(board)}, board)


def host_spec() -> dict[str, Any]:
    """The build host as an LLVM target dict (native CPU name, all its cores)."""
    return {"kind": "llvm", "mcpu": codegen.llvm_get_system_cpu(), "num-cores": os.cpu_count() or 1}


def arm_spec(board: str) -> dict[str, Any]:
    """Board ``board``'s CPU as an aarch64 LLVM target dict."""
    return {"kind": "llvm", "mtriple": AARCH64_TRIPLE, **BOARDS[board].llvm_cpu()}


def x86_features(mcpu: str | None) -> set[str]:
    """LLVM's feature names of an x86 CPU (the host's ``/proc/cpuinfo`` flags if LLVM cannot say)."""
    spec = {"kind": "llvm", "mcpu": mcpu or codegen.llvm_get_system_cpu()}
    try:
        return set(codegen.llvm_get_cpu_features(tvm.target.Target(spec)))
    except (RuntimeError, ValueError):  # what TVM 0.27 raises (tvm.error.* are RuntimeErrors)
        # Linux spells avx512vpopcntdq and avx512vnni "avx512_vpopcntdq" and "avx512_vnni".
        return {
            flag.replace("avx512_vpopcntdq", "avx512vpopcntdq").replace("avx512_vnni", "avx512vnni")
            for flag in cpuinfo().flags
        }


def family_of(spec: dict[str, Any]) -> str:
    """Schedule family of a target dict: cuda by kind, arm by an aarch64 triple, x86 by an x86-64
    triple or none (this host); a CUDA target's ``host`` must be one of those CPUs.

    Raises:
        UnsupportedError: another kind, or a CPU triple (riscv64, armv7, ...) no schedule handles.
    """
    if spec.get("kind") == "cuda":
        host = spec.get("host")
        if isinstance(host, dict):
            _cpu_family(host)
        return "cuda"
    if spec.get("kind") == "llvm":
        return _cpu_family(spec)
    raise UnsupportedError(f"unsupported target kind {spec.get('kind')!r}: expected 'llvm' or 'cuda'")


def _cpu_family(spec: dict[str, Any]) -> str:
    triple = spec.get("mtriple")
    if triple is None:
        return "x86"
    if not isinstance(triple, str):
        raise InputError(f"target triple (mtriple) must be a string, got {triple!r}")
    family = next((name for name, prefixes in CPU_TRIPLES.items() if triple.startswith(prefixes)), None)
    if family is None:
        raise UnsupportedError(
            f"target triple {triple!r}: mptc compiles for x86-64 and aarch64 CPUs and CUDA GPUs "
            f"(triples starting {', '.join(p for prefixes in CPU_TRIPLES.values() for p in prefixes)})"
        )
    return family


def _from_json(target: str, board: str | None, path: Path) -> CompileTarget:
    try:
        spec = json.loads(read_regular_file(path, MAX_TARGET_JSON_BYTES, "target JSON"))
    except (ValueError, RecursionError) as error:  # not JSON (or nested past the parser), not UTF-8
        raise InputError(f"cannot read target JSON {path}: {error}") from error
    if not isinstance(spec, dict):
        raise InputError(f"target JSON {path} must hold one object (a TVM target dict), got {type(spec).__name__}")
    family = family_of(spec)
    if family != target:
        raise InputError(f"target JSON {path} describes a {family} target but --target is {target!r}")
    cores = spec.get("num-cores")
    if cores is not None and (not isinstance(cores, int) or isinstance(cores, bool) or cores < 1):
        raise InputError(
            f"target JSON {path} is not a valid TVM target: num-cores must be a positive integer, got {cores!r}"
        )
    try:
        CompileTarget(family, spec, board).tvm_target()
    except (RuntimeError, ValueError, TypeError) as error:
        raise InputError(f"target JSON {path} is not a valid TVM target: {error}") from error
    return CompileTarget(family, spec, board)
