"""OUT/ is read and cross-checked before anything reaches a device."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mptc.deploy.artifact import elf_arch, host_arch, load_compiled
from mptc.errors import InputError
from tests.deploy.conftest import fresh_copy


def test_reads_the_three_files(mlp_host_out: Path) -> None:
    compiled = load_compiled(mlp_host_out)
    assert compiled.arch == host_arch()
    assert compiled.x.shape == (1, 16) and compiled.y.shape == (1, 10)
    assert compiled.device_kind == "cpu" and compiled.board is None


def test_arch_comes_from_the_elf_header(mlp_host_out: Path, mlp_rpi4_out: Path) -> None:
    assert elf_arch(mlp_host_out / "module.so") == "x86_64"
    assert elf_arch(mlp_rpi4_out / "module.so") == "aarch64"
    assert load_compiled(mlp_rpi4_out).target_summary() == "mcpu=cortex-a72 mattr=+neon"


def test_missing_file_names_it(mlp_host_out: Path, tmp_path: Path) -> None:
    out = fresh_copy(mlp_host_out, tmp_path / "out")
    (out / "reference.npz").unlink()
    with pytest.raises(InputError, match="lacks reference.npz"):
        load_compiled(out)


def test_not_a_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a folder"):
        load_compiled(tmp_path / "nothing")


def test_module_that_is_not_a_library(mlp_host_out: Path, tmp_path: Path) -> None:
    out = fresh_copy(mlp_host_out, tmp_path / "out")
    (out / "module.so").write_text("not a library")
    with pytest.raises(InputError, match="no ELF header"):
        load_compiled(out)


def test_manifest_and_module_from_two_builds(mlp_host_out: Path, tmp_path: Path) -> None:
    out = fresh_copy(mlp_host_out, tmp_path / "out")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["target"]["spec"] = {"kind": "llvm", "mtriple": "aarch64-linux-gnu"}
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="x86_64 library but the manifest's target is aarch64"):
        load_compiled(out)


def test_reference_that_does_not_fit_the_signature(mlp_host_out: Path, tmp_path: Path) -> None:
    out = fresh_copy(mlp_host_out, tmp_path / "out")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["input"]["shape"] = [1, 17]
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match=r"input x is float32\[1, 16\]"):
        load_compiled(out)


def test_target_and_board_come_from_the_manifest(mlp_rpi4_out: Path) -> None:
    compiled = load_compiled(mlp_rpi4_out)
    spec = json.loads((mlp_rpi4_out / "manifest.json").read_text())["target"]["spec"]
    assert compiled.target == spec and compiled.board == "rpi4" and compiled.arch == "aarch64"


def test_a_module_compiled_again_in_place_loads_as_the_new_build(tmp_path: Path) -> None:
    """The dynamic loader keeps one library per path: ``load_library`` loads each build by its content."""
    import numpy as np
    import tvm

    from mptc.artifact import read_reference
    from mptc.deploy.artifact import load_library
    from mptc.targets.compile import compile_model
    from tests.targets.packed_models import binary_dense_model

    out = tmp_path / "out"
    for seed in (0, 1):
        compile_model(binary_dense_model(np.random.default_rng(seed), 1, 40, 8, mode="real"), "x86", out)
        x, y = read_reference(out)
        vm = tvm.runtime.vm.VirtualMachine(load_library(out / "module.so"), tvm.cpu())
        np.testing.assert_allclose(vm["main"](tvm.runtime.tensor(x)).numpy(), y, rtol=1e-5)
