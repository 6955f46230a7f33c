"""The aarch64 cross linker: zig from the venv first, Debian's gcc as the fallback, a clear error
without either, and a zig-linked library that is a dynamic aarch64 ELF against glibc <= 2.28."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import tvm
from tvm import te

from mptc.errors import UnsupportedError
from mptc.targets import cross

ELF_MACHINE_AARCH64 = 183
RPI4 = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a72", "mattr": ["+neon"]}


def _hide_zig(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ziglang", None)  # find_spec then reports it missing


def test_zig_comes_first_and_pins_glibc(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no aarch64-linux-gnu-gcc either way
    linker = cross.aarch64_linker()
    assert linker.name.startswith("zig ")
    assert linker.command == (sys.executable, "-m", "ziglang", "cc", "-target", "aarch64-linux-gnu.2.28")


def test_debian_gcc_is_the_fallback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    gcc = tmp_path / cross.GCC
    gcc.write_text("#!/bin/sh\n")
    gcc.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    _hide_zig(monkeypatch)
    assert cross.aarch64_linker() == cross.CrossLinker(cross.GCC, (cross.GCC,))


def test_neither_says_how_to_install_zig(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    _hide_zig(monkeypatch)
    with pytest.raises(
        UnsupportedError, match=f"neither is installed: run {re.escape(sys.executable)} -m pip install ziglang$"
    ):
        cross.aarch64_linker()


def test_a_failed_link_raises_with_the_linkers_output(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"(?s)zig .* failed to link .*missing\.o: FileNotFound"):
        cross.aarch64_linker().link(str(tmp_path / "lib.so"), [str(tmp_path / "missing.o")])


def test_zig_links_a_dynamic_aarch64_library(tmp_path: Path) -> None:
    """Include options (TVM adds them when a module carries C source) pass through zig, and the
    library asks only for glibc symbol versions a 2.28 system has."""
    n = 64
    a = te.placeholder((n,), name="a")
    b = te.compute((n,), lambda i: te.exp(a[i]), name="b")
    executable = tvm.compile(te.create_prim_func([a, b]), target=tvm.target.Target(RPI4))
    path = tmp_path / "lib.so"
    executable.export_library(str(path), fcompile=cross.aarch64_linker().fcompile(), options=[f"-I{tmp_path}"])
    data = path.read_bytes()
    assert data[:4] == b"\x7fELF" and int.from_bytes(data[18:20], "little") == ELF_MACHINE_AARCH64
    versions = {int(minor) for minor in re.findall(rb"GLIBC_2\.(\d+)", data)}  # expf's, at least
    assert versions and max(versions) <= 28, versions
