"""``mptc compile`` through click's CliRunner (lives with the targets it drives)."""

import hashlib
import json
import sys

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from mptc.cli import main
from mptc.targets.target import resolve_target

from .packed_models import binary_dense_model

ELF_MACHINE_AARCH64 = 183


def test_compile_writes_the_module_folder(tmp_path):
    model = tmp_path / "packed.onnx"
    onnx.save(binary_dense_model(np.random.default_rng(0), 1, 70, 10, mode="binary"), model)
    result = CliRunner().invoke(main, ["compile", str(model), "--target", "x86", "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "dense: xnor-popcount" in result.output
    size = (tmp_path / "out" / "module.so").stat().st_size
    assert f"module.so {size:,} B (the weights as its kernels read them: " in result.output
    written = {p.name for p in (tmp_path / "out").iterdir()}
    assert written == {"module.so", "manifest.json", "reference.npz", "source.onnx"}


def test_a_board_on_x86_is_a_one_line_error(tmp_path):
    model = tmp_path / "packed.onnx"
    onnx.save(binary_dense_model(np.random.default_rng(0), 1, 70, 10, mode="binary"), model)
    result = CliRunner().invoke(
        main, ["compile", str(model), "--target", "x86", "--board", "rpi4", "-o", str(tmp_path / "o")]
    )
    assert result.exit_code == 4 and "rpi4" in result.output


def test_an_unpacked_ternary_model_is_packed_first(tmp_path):
    rng = np.random.default_rng(1)
    weight = rng.choice([-0.37, 0.0, 0.37], size=(10, 70)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w"], ["y"], transB=1)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 70])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 10])],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    onnx.save(model, tmp_path / "model.onnx")
    result = CliRunner().invoke(
        main, ["compile", str(tmp_path / "model.onnx"), "--target", "x86", "-o", str(tmp_path / "out")]
    )
    assert result.exit_code == 0, result.output
    assert "packing 1 ternary layer(s)" in result.output and (tmp_path / "out" / "packed.onnx").is_file()


def test_arm_links_with_zig_without_a_cross_gcc(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no aarch64-linux-gnu-gcc: only the venv's zig is left
    model = tmp_path / "packed.onnx"
    onnx.save(binary_dense_model(np.random.default_rng(0), 1, 70, 10, mode="binary"), model)
    result = CliRunner().invoke(
        main, ["compile", str(model), "--target", "arm", "--board", "rpi4", "-o", str(tmp_path / "out")]
    )
    assert result.exit_code == 0, result.output
    header = (tmp_path / "out" / "module.so").read_bytes()[:20]
    assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == ELF_MACHINE_AARCH64


def test_arm_without_any_cross_linker_says_how_to_install_one(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setitem(sys.modules, "ziglang", None)  # as if the wheel were not installed
    model = tmp_path / "packed.onnx"
    onnx.save(binary_dense_model(np.random.default_rng(0), 1, 70, 10, mode="binary"), model)
    result = CliRunner().invoke(
        main, ["compile", str(model), "--target", "arm", "--board", "rpi4", "-o", str(tmp_path / "out")]
    )
    assert result.exit_code == 4, result.output
    assert result.output.startswith("mptc: error: ") and result.output.count("\n") == 1
    assert result.output.endswith(f"run {sys.executable} -m pip install ziglang\n")


def _symbolic(tmp_path, axes=(0,)):
    model = binary_dense_model(np.random.default_rng(1), 1, 70, 10, mode="real", sparsity=0.3)
    for axis in axes:
        model.graph.input[0].type.tensor_type.shape.dim[axis].dim_param = f"d{axis}"
    path = tmp_path / "symbolic.onnx"
    onnx.save(model, path)
    return path


def test_a_symbolic_batch_compiles_for_the_shape_given(tmp_path):
    result = CliRunner().invoke(
        main,
        ["compile", str(_symbolic(tmp_path)), "--target", "x86", "--input-shape", "6,70", "-o", str(tmp_path / "o")],
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["input"]["shape"] == [6, 70] and manifest["layers"][0]["input_shape"] == [6, 70]
    assert np.load(tmp_path / "o" / "reference.npz")["x"].shape == (6, 70)


def test_a_symbolic_batch_without_a_shape_is_one(tmp_path):
    result = CliRunner().invoke(
        main, ["compile", str(_symbolic(tmp_path)), "--target", "x86", "-o", str(tmp_path / "o")]
    )
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "o" / "manifest.json").read_text())["input"]["shape"] == [1, 70]


@pytest.mark.parametrize(
    "axes, shape, code, message",
    [
        ((1,), None, 4, "axis 1 is symbolic ('d1'): give the shape to compile for (--input-shape"),
        ((0,), "6,71", 3, "--input-shape [6, 71] does not fit input 'x' of shape ['d0', 70]"),
        ((0,), "6,70,1", 3, "does not fit input 'x'"),
        ((0,), "6,x", 2, "expected positive integers separated by commas"),
        ((0,), "0,70", 2, "expected positive integers separated by commas"),
    ],
)
def test_a_shape_that_does_not_fit_is_one_line(tmp_path, axes, shape, code, message):
    args = ["compile", str(_symbolic(tmp_path, axes)), "--target", "x86", "-o", str(tmp_path / "o")]
    result = CliRunner().invoke(main, args + (["--input-shape", shape] if shape else []))
    assert result.exit_code == code, result.output
    assert message in result.output
    assert not (tmp_path / "o").exists()


def test_int8_activations_compile_the_quantized_model_and_record_the_calibration(tmp_path):
    rng = np.random.default_rng(5)
    onnx.save(binary_dense_model(rng, 2, 70, 10, mode="real", sparsity=0.4), tmp_path / "packed.onnx")
    samples = rng.standard_normal((33, 70)).astype(np.float32)
    np.savez(tmp_path / "calibration.npz", x=samples)
    args = ["compile", str(tmp_path / "packed.onnx"), "--target", "x86", "-o", str(tmp_path / "out")]
    result = CliRunner().invoke(
        main, [*args, "--activations", "int8", "--calibration", str(tmp_path / "calibration.npz")]
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    if not resolve_target("x86").has_avx512_vnni:  # the pair runs as TVM's ops: a real-input layer
        assert manifest["layers"][0]["input_mode"] == "real" and manifest["activations"]["samples"] == 33
        return
    assert "dense: int8-dot" in result.output
    assert manifest["activations"] == {
        "dtype": "int8",
        "samples": 33,
        "sha256": hashlib.sha256(samples.tobytes()).hexdigest(),
    }
    assert manifest["layers"][0]["input_mode"] == "int8"
    source = onnx.load(tmp_path / "out" / "source.onnx")  # the model compiled: quantized
    assert [n.op_type for n in source.graph.node][:2] == ["QuantizeLinear", "DequantizeLinear"]
    fp32 = CliRunner().invoke(main, args[:-1] + [str(tmp_path / "fp32")])
    assert fp32.exit_code == 0 and json.loads((tmp_path / "fp32" / "manifest.json").read_text())["activations"] == {
        "dtype": "fp32",
        "samples": 0,
        "sha256": None,
    }


@pytest.mark.parametrize(
    "extra, code, message",
    [
        (["--activations", "int8"], 2, "go together"),
        (["--calibration", "CAL"], 2, "go together"),
        (["--activations", "int8", "--calibration", "WRONG"], 3, "does not fit input 'x'"),
        (["--activations", "int8", "--calibration", "MISSING"], 3, "cannot read"),
    ],
)
def test_int8_activation_mistakes_are_one_line(tmp_path, extra, code, message):
    rng = np.random.default_rng(6)
    onnx.save(binary_dense_model(rng, 1, 70, 10, mode="real"), tmp_path / "packed.onnx")
    np.save(tmp_path / "cal.npy", rng.standard_normal((4, 70)).astype(np.float32))
    np.save(tmp_path / "wrong.npy", rng.standard_normal((4, 71)).astype(np.float32))
    paths = {"CAL": tmp_path / "cal.npy", "WRONG": tmp_path / "wrong.npy", "MISSING": tmp_path / "none.npz"}
    extra = [str(paths.get(arg, arg)) for arg in extra]
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["compile", str(tmp_path / "packed.onnx"), "--target", "x86", "-o", str(out), *extra]
    )
    assert result.exit_code == code and message in result.output, result.output
    assert not out.exists()
