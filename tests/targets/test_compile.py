"""compile_model end to end: x86 module vs onnxruntime, aarch64 ELF, CUDA source, errors."""

import dataclasses
import hashlib
import json
import shutil

import numpy as np
import pytest
import tvm
from tvm import relax
from tvm.support import nvcc

from mptc.errors import UnsupportedError
from mptc.targets import chooser
from mptc.targets.compile import compile_model
from mptc.targets.policy import default_policy

from .packed_models import binary_chain, binary_conv_model, binary_dense_model, small_network

ELF_MACHINE_AARCH64 = 183
ELF_MACHINE_X86_64 = 62


@pytest.fixture(scope="module")
def network():
    return small_network(np.random.default_rng(0))


@pytest.fixture(scope="module")
def x86_out(tmp_path_factory, network):
    out = tmp_path_factory.mktemp("x86")
    compile_model(network, "x86", out)
    return out


def _elf_machine(path) -> int:
    header = path.read_bytes()[:20]
    assert header[:4] == b"\x7fELF"
    return int.from_bytes(header[18:20], "little")


def test_x86_module_matches_onnxruntime(x86_out):
    reference = np.load(x86_out / "reference.npz")
    vm = relax.VirtualMachine(tvm.runtime.load_module(str(x86_out / "module.so")), tvm.cpu())
    y = vm["main"](tvm.runtime.tensor(reference["x"])).numpy()
    assert np.abs(y - reference["y"]).max() <= 1e-4 * np.abs(reference["y"]).max()
    np.testing.assert_array_equal(y.argmax(1), reference["y"].argmax(1))


def test_manifest_describes_the_build(x86_out, network):
    manifest = json.loads((x86_out / "manifest.json").read_text())
    assert manifest["reference_runtime"].startswith("onnxruntime")
    assert manifest["input"] == {"name": "x", "shape": [1, 3, 12, 12], "dtype": "float32"}
    assert manifest["output"]["shape"] == [1, 10]
    assert manifest["source_model"]["sha256"] == hashlib.sha256(network.SerializeToString()).hexdigest()
    assert manifest["versions"]["tvm"] == tvm.__version__
    kernels = {layer["name"]: layer["kernel"] for layer in manifest["layers"]}
    assert kernels == {
        "bconv1": chooser.XNOR_POPCOUNT,
        "dense2": chooser.SPARSE_SIGN_SPLIT,
        "dense3": chooser.XNOR_POPCOUNT,
    }
    assert _elf_machine(x86_out / "module.so") == ELF_MACHINE_X86_64


def test_arm_build_is_an_aarch64_library(tmp_path, network):
    manifest = compile_model(network, "arm", tmp_path, board="rpi4")
    assert _elf_machine(tmp_path / "module.so") == ELF_MACHINE_AARCH64
    assert manifest["target"]["spec"]["mcpu"] == "cortex-a72"


@pytest.mark.parametrize("model", [small_network, binary_chain], ids=["network", "packed-chain"])
def test_cuda_build_needs_no_gpu_and_uses_popcount(tmp_path, model):
    manifest = compile_model(model(np.random.default_rng(0)), "cuda", tmp_path)
    source = (tmp_path / "module.cu").read_text()
    assert "__popcll" in source or "__popc(" in source
    assert manifest["files"]["cuda_source"] == "module.cu" and (tmp_path / "module.so").is_file()


@pytest.mark.parametrize("target, board", [("tpu", None), ("x86", "rpi4")])
def test_unknown_target_or_board_is_refused(tmp_path, network, target, board):
    with pytest.raises(UnsupportedError):
        compile_model(network, target, tmp_path, board=board)


@pytest.mark.parametrize("target", ["cuda", "arm"])
@pytest.mark.parametrize("size", [4, 40], ids=["short-map", "long-map"])
def test_real_input_conv_builds_for_cuda_and_arm(tmp_path, target, size):
    """The block-sparse conv (blocks of 4 on a small map, of 2 in channel groups on a large one)
    has a gather loop nest on every target family; the CUDA one compiles to device code."""
    model = binary_conv_model(np.random.default_rng(4), 1, 16, size, 24, 3, 1, 1, mode="real", sparsity=0.9)
    manifest = compile_model(model, target, tmp_path)
    assert [layer["kernel"] for layer in manifest["layers"]] == [chooser.BLOCK_SPARSE]
    assert (tmp_path / "module.so").is_file()
    if target == "cuda" and shutil.which("nvcc"):  # device code is otherwise compiled at load time (NVRTC)
        with tvm.target.Target({"kind": "cuda", "arch": "sm_90"}):
            ptx = nvcc.compile_cuda((tmp_path / "module.cu").read_text(), target_format="ptx", compiler="nvcc")
        assert bytes(ptx).count(b".entry") >= 3  # flat input, gather, epilogue


@pytest.mark.parametrize("target", ["cuda", "arm"])
def test_batched_sparse_dense_builds_for_cuda_and_arm(tmp_path, target):
    """The sign-split dense along the batch has a schedule on every target family; the CUDA one
    compiles to device code."""
    model = binary_dense_model(np.random.default_rng(5), 8, 100, 24, mode="real", sparsity=0.9)
    manifest = compile_model(model, target, tmp_path)
    [layer] = manifest["layers"]
    assert layer["kernel"] == chooser.SPARSE_SIGN_SPLIT and "along the batch" in layer["reason"]
    assert (tmp_path / "module.so").is_file()
    if target == "cuda" and shutil.which("nvcc"):
        with tvm.target.Target({"kind": "cuda", "arch": "sm_90"}):
            ptx = nvcc.compile_cuda((tmp_path / "module.cu").read_text(), target_format="ptx", compiler="nvcc")
        assert bytes(ptx).count(b".entry") >= 2  # sign-split operand, sums + epilogue


def test_a_policy_given_to_compile_model_picks_the_kernels(tmp_path):
    """A layer the x86 default runs block-sparse stays dense under a policy with a later
    break-even, and the manifest records that policy's break-evens."""
    model = binary_conv_model(np.random.default_rng(4), 1, 16, 4, 24, 3, 1, 1, mode="real", sparsity=0.9)
    policy = dataclasses.replace(default_policy("x86"), conv_break_even=0.95)
    manifest = compile_model(model, "x86", tmp_path, policy=policy)
    assert [layer["kernel"] for layer in manifest["layers"]] == [chooser.DENSE_TERNARY]
    assert manifest["sparse_break_even"] == {"BinaryConv": 0.95, "BinaryDense": policy.dense_ternary_tier(None)}
