"""Damaged ``mptc compile`` output folders through ``mptc profile`` on this host.

The module of a packed model is compiled once; each case damages a copy: a truncated or foreign
``module.so``, a ``reference.npz`` or ``manifest.json`` that is corrupt or disagrees, and inputs
of another shape or type handed to the module at run time. A bit-flipped but complete library is
not tried: running corrupted machine code cannot be made safe by any reader.
"""

from __future__ import annotations

import io
import json
import random
import shutil

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.robustness.harness import FUZZ, assert_refused, invoke, record

PROFILE = ["profile", "--repeat", "1"]


@pytest.fixture(scope="session")
def compiled(artifacts, tmp_path_factory):
    out = tmp_path_factory.mktemp("compiled") / "x86"
    result = invoke(["compile", artifacts.packed, "--target", "x86", "-o", out])
    if result.exit_code != 0:
        pytest.skip(f"mptc compile does not build the packed MLP on this host: {result.output.strip()}")
    return out


@pytest.fixture
def copy(compiled, tmp_path):
    return lambda: shutil.copytree(compiled, tmp_path / "out", dirs_exist_ok=True)


def npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def profile_refused(out, what: str) -> None:
    record("profile", what, *(path.read_bytes() for path in sorted(out.iterdir()) if path.is_file()))
    result = invoke([*PROFILE, out])
    assert_refused(result)
    assert not (out / "profile.json").exists() or result.exit_code == 5  # exit 5 writes its report on purpose


def test_truncated_modules(compiled, tmp_path):
    module = (compiled / "module.so").read_bytes()

    @settings(FUZZ, max_examples=25)
    @given(cut=st.integers(0, len(module) - 1))
    def check(cut: int) -> None:
        out = shutil.copytree(compiled, tmp_path / "out", dirs_exist_ok=True)
        (out / "module.so").write_bytes(module[:cut])
        profile_refused(out, f"module.so cut at {cut}")

    check()


def test_damaged_references(compiled, tmp_path):
    reference = (compiled / "reference.npz").read_bytes()

    @settings(FUZZ, max_examples=40)
    @given(how=st.sampled_from(("truncate", "flip", "random")), seed=st.integers(0, 2**31))
    def check(how: str, seed: int) -> None:
        rng = random.Random(seed)
        if how == "truncate":
            data = reference[: rng.randrange(len(reference))]
        elif how == "random":
            data = rng.randbytes(rng.randrange(512))
        else:
            flipped = bytearray(reference)
            for _ in range(rng.randint(1, 16)):
                bit = rng.randrange(8 * len(flipped))
                flipped[bit // 8] ^= 1 << (bit % 8)
            data = bytes(flipped)
        out = shutil.copytree(compiled, tmp_path / "out", dirs_exist_ok=True)
        (out / "profile.json").unlink(missing_ok=True)
        (out / "reference.npz").write_bytes(data)
        record("profile reference.npz", data)
        result = invoke([*PROFILE, out])
        if result.exit_code != 0:
            assert_refused(result)

    check()


def manifest_with_input(out, shape: list[int], dtype: str = "float32") -> None:
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["input"].update(shape=shape, dtype=dtype)
    (out / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    "case",
    [
        "x of another shape (the manifest agrees)",
        "x of a bigger batch (the manifest agrees)",
        "x flattened (the manifest agrees)",
        "x of int32 (the manifest agrees)",
        "x of float64 (the manifest agrees)",
        "x of another shape than the manifest's",
        "y of another shape than the manifest's",
        "reference without y",
        "reference holding an object array",
        "manifest not JSON",
        "manifest a list",
        "manifest without input",
        "manifest target not a dict",
        "manifest target for aarch64",
        "module.so random bytes",
        "module.so an empty file",
        "module.so a folder",
        "module.so missing",
        "reference.npz missing",
        "module.so an aarch64 ELF header only",
    ],
)
def test_wrong_folders(case, copy):
    out = copy()
    x = np.load(out / "reference.npz")["x"]
    y = np.load(out / "reference.npz")["y"]
    if case.startswith("x of another shape (the"):
        manifest_with_input(out, [1, 1, 4, 16])
        (out / "reference.npz").write_bytes(npz(x=x.reshape(1, 1, 4, 16), y=y))
    elif case.startswith("x of a bigger batch"):
        manifest_with_input(out, [3, *x.shape[1:]])
        (out / "reference.npz").write_bytes(npz(x=np.repeat(x, 3, axis=0), y=y))
    elif case.startswith("x flattened"):
        manifest_with_input(out, [1, x.size])
        (out / "reference.npz").write_bytes(npz(x=x.reshape(1, -1), y=y))
    elif case.startswith("x of int32"):
        manifest_with_input(out, list(x.shape), "int32")
        (out / "reference.npz").write_bytes(npz(x=x.astype(np.int32), y=y))
    elif case.startswith("x of float64"):
        manifest_with_input(out, list(x.shape), "float64")
        (out / "reference.npz").write_bytes(npz(x=x.astype(np.float64), y=y))
    elif case == "x of another shape than the manifest's":
        (out / "reference.npz").write_bytes(npz(x=x.reshape(1, -1), y=y))
    elif case == "y of another shape than the manifest's":
        (out / "reference.npz").write_bytes(npz(x=x, y=y.reshape(-1)))
    elif case == "reference without y":
        (out / "reference.npz").write_bytes(npz(x=x))
    elif case == "reference holding an object array":
        (out / "reference.npz").write_bytes(npz(x=np.array([{"a": 1}], dtype=object), y=y))
    elif case.startswith("manifest"):
        manifest = json.loads((out / "manifest.json").read_text())
        text = {
            "manifest not JSON": "{ nope",
            "manifest a list": "[]",
            "manifest without input": json.dumps({k: v for k, v in manifest.items() if k != "input"}),
            "manifest target not a dict": json.dumps({**manifest, "target": "x86"}),
            "manifest target for aarch64": json.dumps(
                {**manifest, "target": {**manifest["target"], "spec": {"kind": "llvm", "mtriple": "aarch64-linux-gnu"}}}
            ),
        }[case]
        (out / "manifest.json").write_text(text)
    elif case == "module.so random bytes":
        (out / "module.so").write_bytes(random.Random(0).randbytes(4096))
    elif case == "module.so an empty file":
        (out / "module.so").write_bytes(b"")
    elif case == "module.so a folder":
        (out / "module.so").unlink()
        (out / "module.so").mkdir()
    elif case.endswith("missing"):
        (out / case.split()[0]).unlink()
    elif case == "module.so an aarch64 ELF header only":
        header = bytearray((out / "module.so").read_bytes()[:64])
        header[18:20] = (183).to_bytes(2, "little")
        (out / "module.so").write_bytes(bytes(header))
    profile_refused(out, case)
