"""``module.so`` files that are not what ``mptc compile`` wrote, through ``mptc profile`` on this host.

Loading a library runs its constructors, so a foreign ``module.so`` could kill ``profile`` with a
signal and no message. Two defences are checked here, each on generated cases:

* a module whose bytes differ from the manifest's sha256 (bits flipped anywhere, bytes appended
  or cut, another build's module) is refused (exit 3) before it is loaded at all;
* a module that does match its manifest (someone rewrote both) but whose constructor crashes
  (SIGSEGV, SIGABRT, SIGBUS, SIGFPE), executes an illegal instruction, exits, or hangs, is first
  loaded in a trial process: ``profile`` reports it in one line (exit 3, or 6 for SIGILL and a
  hang) instead of dying; one that loads harmlessly but is no TVM module is named as such.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.deploy.conftest import HOST, _int8_dense, _mlp, write_out
from tests.robustness.harness import FUZZ, assert_refused, invoke, record

# What a constructor does, and what profile must say: (exit code, words of the error line).
CONSTRUCTORS = {
    "segv": ("*(volatile int *)0 = 1;", 3, "crashed while loading (SIGSEGV)"),
    "abort": ("abort();", 3, "crashed while loading (SIGABRT)"),
    "bus": ("raise(SIGBUS);", 3, "crashed while loading (SIGBUS)"),
    "fpe": ("raise(SIGFPE);", 3, "crashed while loading (SIGFPE)"),
    "ill": ("__builtin_trap();", 6, "SIGILL"),
    "exit": ("exit({code});", 3, "ended the process (exit code {code}) while loading"),
    "_exit": ("_exit({code});", 3, "ended the process (exit code {code}) while loading"),
    "hang": ("for (;;) pause();", 6, "was still loading after 1 s"),
    "nothing": ("", 3, "is not a module `mptc compile` wrote"),  # a harmless library that is no TVM module
}


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return write_out(tmp_path_factory.mktemp("modules") / "out", _mlp(), HOST, None)


@pytest.fixture(scope="module")
def cc(tmp_path_factory):
    """A C compiler for shared libraries: the system's, else zig's (installed with mptc)."""
    candidates = [[path] for path in (shutil.which("cc"), shutil.which("gcc")) if path]
    candidates.append([sys.executable, "-m", "ziglang", "cc"])
    probe = tmp_path_factory.mktemp("cc") / "probe.c"
    probe.write_text("int mptc_probe(void) { return 1; }\n")
    for compiler in candidates:
        done = subprocess.run(
            [*compiler, "-shared", "-fPIC", "-o", str(probe.with_suffix(".so")), str(probe)], capture_output=True
        )
        if done.returncode == 0:
            return compiler
    pytest.skip("no C compiler to build foreign libraries with")


def with_module(out, folder, data: bytes, *, manifest_agrees: bool):
    """A copy of ``out`` whose module.so is ``data``; its manifest's sha256 updated if ``manifest_agrees``."""
    copy = shutil.copytree(out, folder, dirs_exist_ok=True)
    (copy / "profile.json").unlink(missing_ok=True)
    (copy / "module.so").write_bytes(data)
    if manifest_agrees:
        manifest = json.loads((copy / "manifest.json").read_text())
        manifest["module_sha256"] = hashlib.sha256(data).hexdigest()
        (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


def test_modules_that_differ_from_their_manifest(out, tmp_path):
    module = (out / "module.so").read_bytes()
    other = (write_out(tmp_path / "other", _int8_dense(), HOST, None) / "module.so").read_bytes()

    @settings(FUZZ, max_examples=30)
    @given(
        how=st.sampled_from(("flip", "append", "cut", "another build")),
        positions=st.lists(st.integers(0, 8 * len(module) - 1), min_size=1, max_size=8),
        tail=st.binary(min_size=1, max_size=64),
    )
    def check(how: str, positions: list[int], tail: bytes) -> None:
        data = bytearray(module)
        if how == "flip":
            for bit in positions:
                data[bit // 8] ^= 1 << (bit % 8)
        elif how == "append":
            data += tail
        elif how == "cut":
            del data[max(positions[0] // 8, 1) :]
        else:
            data = bytearray(other)
        if bytes(data) == module:  # flips that cancel out
            return
        copy = with_module(out, tmp_path / "copy", bytes(data), manifest_agrees=False)
        record("profile module.so", how, bytes(data))
        result = invoke(["profile", copy, "--repeat", "1"])
        assert_refused(result, copy / "profile.json", codes=frozenset({3}))
        line = result.stderr.strip().splitlines()[-1]
        assert "module.so" in line
        if how in ("append", "another build"):
            assert "does not match its manifest" in line, line

    check()


def test_a_folder_without_a_module_checksum_is_refused(out, tmp_path):
    copy = shutil.copytree(out, tmp_path / "old")
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["module_sha256"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    result = invoke(["profile", copy, "--repeat", "1"])
    assert_refused(result, copy / "profile.json", codes=frozenset({3}))
    assert "records no sha256 of module.so" in result.stderr


def test_foreign_libraries_that_crash_or_hang_while_loading(out, cc, tmp_path):
    built: dict[str, bytes] = {}

    def library(body: str) -> bytes:
        if body not in built:
            source = tmp_path / f"lib{len(built)}.c"
            source.write_text(
                "#include <signal.h>\n#include <stdlib.h>\n#include <unistd.h>\n"
                f"__attribute__((constructor)) static void mptc_hostile(void) {{ {body} }}\n"
                "int mptc_hostile_marker(void) { return 7; }\n"
            )
            subprocess.run(
                [*cc, "-shared", "-fPIC", "-O0", "-o", str(source.with_suffix(".so")), str(source)], check=True
            )
            built[body] = source.with_suffix(".so").read_bytes()
        return built[body]

    @settings(FUZZ, max_examples=12)
    @given(kind=st.sampled_from(sorted(CONSTRUCTORS)), code=st.integers(0, 255))
    def check(kind: str, code: int) -> None:
        template, exit_code, words = CONSTRUCTORS[kind]
        body = template.format(code=code)
        copy = with_module(out, tmp_path / "copy", library(body), manifest_agrees=True)
        record("profile a foreign module.so whose constructor does", body)
        started = time.monotonic()
        result = invoke(["profile", copy, "--repeat", "1", "--timeout", "1"])
        elapsed = time.monotonic() - started
        assert_refused(result, copy / "profile.json", codes=frozenset({exit_code}))
        line = result.stderr.strip().splitlines()[-1]
        assert words.format(code=code) in line, line
        assert elapsed < 30, f"{kind}: refused after {elapsed:.1f} s"

    check()
