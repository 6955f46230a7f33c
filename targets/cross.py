"""The cross linker that turns TVM's aarch64 object files into ``module.so``.

Why zig first: the ``ziglang`` wheel (a dependency of mptc) carries clang, lld and the stubs of
every glibc, so ``pip install`` alone links for aarch64, with no system package. Debian's
``aarch64-linux-gnu-gcc`` is the fallback where no ziglang wheel is installed.

zig links against glibc 2.28 (``ZIG_TARGET``), the floor the aarch64 TVM runtime wheels already
require (manylinux_2_28): a module then loads on Raspberry Pi OS bookworm (glibc 2.36) and on
Jetson Linux's Ubuntu 20.04 (2.31) and 22.04 (2.35). zig builds its glibc stubs for that target
once per machine (about 15 s, then cached); later links take a fraction of a second.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

import tvm

from mptc.errors import UnsupportedError

ZIG_TARGET = "aarch64-linux-gnu.2.28"
GCC = "aarch64-linux-gnu-gcc"


@dataclass(frozen=True)
class CrossLinker:
    """A compiler driver that links aarch64 objects into a shared library.

    Attributes:
        name: what the messages call it (``zig 0.17.1``, ``aarch64-linux-gnu-gcc``).
        command: the driver and the options that select the target, before ``-shared``.
    """

    name: str
    command: tuple[str, ...]

    def link(self, output: str, objects: list[str], options: list[str] | None = None) -> None:
        """Link ``objects`` into ``output``; RuntimeError with the driver's output, as TVM's own
        linker raises, so a caller tells a full disk from a bug the same way for every driver."""
        cmd = [*self.command, "-shared", "-fPIC", "-o", output, *(options or []), *objects]
        result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{self.name} failed to link {output}:\n{result.stdout}\ncommand: {' '.join(cmd)}")

    def fcompile(self) -> Callable[..., None]:
        """The ``fcompile`` argument of ``export_library``."""
        return tvm.support.cc.cross_compiler(self.link, output_format="so")


def aarch64_linker() -> CrossLinker:
    """zig from the venv's ziglang wheel, else Debian's cross gcc.

    Raises:
        UnsupportedError: neither is installed (the message gives the command that installs zig).
    """
    if importlib.util.find_spec("ziglang") is not None:
        return CrossLinker(
            f"zig {importlib.metadata.version('ziglang')}",
            (sys.executable, "-m", "ziglang", "cc", "-target", ZIG_TARGET),
        )
    if shutil.which(GCC) is not None:
        return CrossLinker(GCC, (GCC,))
    raise UnsupportedError(
        f"linking for aarch64 needs zig or {GCC} and neither is installed: run {sys.executable} -m pip install ziglang"
    )
