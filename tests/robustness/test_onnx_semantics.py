"""Well-formed ONNX files that ask for what mptc does not do: unknown ops, dynamic or huge
shapes, non-float inputs, odd opsets, external data that is not there, broken packed operators.

Each goes through ``mptc inspect`` and ``mptc optimize``; the command either works (and writes a
valid model) or refuses with a documented exit code and one line.
"""

from __future__ import annotations

from collections.abc import Callable

import onnx
import pytest
from onnx import TensorProto, helper

from mptc.errors import MptcError
from mptc.passes.pipeline import load_model, optimize
from tests.robustness.harness import assert_refused, invoke, record

Edit = Callable[[onnx.ModelProto], None]


def first(model: onnx.ModelProto, op_type: str) -> onnx.NodeProto:
    return next(node for node in model.graph.node if op_type in node.op_type)


def set_input_dims(model: onnx.ModelProto, dims: list[int | str]) -> None:
    shape = model.graph.input[0].type.tensor_type.shape
    shape.ClearField("dim")
    for dim in dims:
        shape.dim.add().CopyFrom(
            onnx.TensorShapeProto.Dimension(**({"dim_param": dim} if isinstance(dim, str) else {"dim_value": dim}))
        )


def set_input_type(model: onnx.ModelProto, elem_type: int) -> None:
    model.graph.input[0].type.tensor_type.elem_type = elem_type


def set_opset(model: onnx.ModelProto, version: int) -> None:
    next(op for op in model.opset_import if op.domain in ("", "ai.onnx")).version = version


def externalize(model: onnx.ModelProto, location: str) -> None:
    tensor = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value=location)


def huge_initializer(model: onnx.ModelProto) -> None:
    tensor = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    del tensor.dims[:]
    tensor.dims.extend([2**31, 2**31])  # declares 16 EiB of floats; holds a few KiB


def wrong_initializer_size(model: onnx.ModelProto) -> None:
    tensor = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    tensor.raw_data = tensor.raw_data[: len(tensor.raw_data) // 2]


def self_loop(model: onnx.ModelProto) -> None:
    node = model.graph.node[len(model.graph.node) // 2]
    node.input[0] = node.output[0]


def unknown_domain_op(model: onnx.ModelProto) -> None:
    node = model.graph.node[0]
    node.op_type, node.domain = "Mystery", "com.example"
    model.opset_import.add(domain="com.example", version=1)


def weight_as_graph_input(model: onnx.ModelProto) -> None:
    node = first(model, "Gemm") if any("Gemm" in n.op_type for n in model.graph.node) else first(model, "MatMul")
    tensor = next(t for t in model.graph.initializer if t.name in node.input[1:])
    model.graph.input.append(helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims)))


CASES: dict[str, Edit] = {
    "unknown op": lambda m: setattr(m.graph.node[0], "op_type", "NoSuchOp"),
    "unknown op in its own domain": unknown_domain_op,
    "all input dims dynamic": lambda m: set_input_dims(m, ["n", "c"]),
    "rank-1 input": lambda m: set_input_dims(m, [64]),
    "rank-5 input": lambda m: set_input_dims(m, [1, 1, 1, 8, 8]),
    "huge declared input": lambda m: set_input_dims(m, [2**40, 2**40]),
    "zero-size input": lambda m: set_input_dims(m, [0, 64]),
    "int64 input": lambda m: set_input_type(m, TensorProto.INT64),
    "bool input": lambda m: set_input_type(m, TensorProto.BOOL),
    "string input": lambda m: set_input_type(m, TensorProto.STRING),
    "float16 input": lambda m: set_input_type(m, TensorProto.FLOAT16),
    "double input": lambda m: set_input_type(m, TensorProto.DOUBLE),
    "undefined input type": lambda m: set_input_type(m, TensorProto.UNDEFINED),
    "huge declared initializer": huge_initializer,
    "initializer shorter than its shape": wrong_initializer_size,
    "external data that is missing": lambda m: externalize(m, "weights.bin"),
    "external data outside the model's folder": lambda m: externalize(m, "../../../../etc/passwd"),
    "external data at an absolute path": lambda m: externalize(m, "/etc/passwd"),
    "opset 1": lambda m: set_opset(m, 1),
    "opset 99": lambda m: set_opset(m, 99),
    "ir_version 99": lambda m: setattr(m, "ir_version", 99),
    "ir_version 0": lambda m: setattr(m, "ir_version", 0),
    "node fed by its own output": self_loop,
    "no graph outputs": lambda m: m.graph.ClearField("output"),
    "no graph inputs": lambda m: m.graph.ClearField("input"),
    "duplicate node outputs": lambda m: m.graph.node[1].output.__setitem__(0, m.graph.node[0].output[0]),
    "weight fed at run time": weight_as_graph_input,
}

PACKED_CASES: dict[str, Edit] = {
    "packed op missing its bias": lambda m: first(m, "Binary").input.pop(),
    "packed op with an extra input": lambda m: first(m, "Binary").input.append(first(m, "Binary").input[1]),
    "packed op with no inputs": lambda m: first(m, "Binary").ClearField("input"),
    "packed op of an unknown kind": lambda m: setattr(first(m, "Binary"), "op_type", "BinaryPool"),
    "packed op's bits swapped with its scale": lambda m: first(m, "Binary").input.__setitem__(
        1, first(m, "Binary").input[3]
    ),
    "packed conv without kernel_shape": lambda m: first(m, "BinaryConv").ClearField("attribute"),
    "packed op in a newer domain version": lambda m: setattr(
        next(o for o in m.opset_import if o.domain == "ai.mptc"), "version", 99
    ),
    "packed op with its domain undeclared": lambda m: m.opset_import.remove(
        next(o for o in m.opset_import if o.domain == "ai.mptc")
    ),
    "packed op without its function body": lambda m: m.ClearField("functions"),
}


def edited(source, edit: Edit, folder, name: str):
    model = onnx.load(source)
    edit(model)
    path = folder / f"{name.replace(' ', '-')}.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def check_command(command: str, path, folder) -> None:
    out = folder / "out.onnx"
    out.unlink(missing_ok=True)
    record(command, path.read_bytes())
    result = invoke([command, path, "-o", out] if command == "optimize" else [command, path])
    if result.exit_code == 0:
        if command == "optimize":
            onnx.checker.check_model(onnx.load(out))
        return
    assert_refused(result, *([out] if command == "optimize" else []))


def applicable(source: str) -> list[str]:
    """The cases that apply to a source model (a float model has no packed op, a packed one no Gemm)."""
    if source == "model":
        return list(CASES)
    cases = [case for case in {**PACKED_CASES, **CASES} if case != "weight fed at run time"]
    return cases if source == "conv_packed" else [case for case in cases if case != "packed conv without kernel_shape"]


SOURCE_CASES = [(source, case) for source in ("model", "packed", "conv_packed") for case in applicable(source)]


@pytest.mark.parametrize("command", ["inspect", "optimize"])
@pytest.mark.parametrize("source, case", SOURCE_CASES)
def test_inspect_and_optimize(source, case, command, artifacts, tmp_path):
    path = edited(getattr(artifacts, source), {**PACKED_CASES, **CASES}[case], tmp_path, case)
    check_command(command, path, tmp_path)


@pytest.mark.parametrize("case", applicable("model"))
def test_compile_refuses_what_optimize_refuses(case, artifacts, tmp_path):
    """``mptc compile`` packs an unpacked model first: one the pipeline refuses must be refused as
    cleanly. (One the pipeline takes goes on to a TVM build, a second each: the compile tests' job.)"""
    path = edited(artifacts.model, CASES[case], tmp_path, case)
    try:
        optimize(load_model(path))
    except MptcError:
        out = tmp_path / "module"
        record("compile", path.read_bytes())
        assert_refused(invoke(["compile", path, "--target", "x86", "-o", out]), out)


@pytest.mark.parametrize(
    "source, case",
    [(source, case) for source, case in SOURCE_CASES if source != "model"],
)
def test_compile_of_packed_models_the_reader_takes(source, case, artifacts, tmp_path):
    """Packed models are compiled as they are: the TVM side reads what inspect accepted."""
    path = edited(getattr(artifacts, source), {**PACKED_CASES, **CASES}[case], tmp_path, case)
    try:
        load_model(path)
    except MptcError:
        return  # refused at read: test_compile_refuses_what_optimize_refuses covers it
    out = tmp_path / "module"
    record("compile", path.read_bytes())
    result = invoke(["compile", path, "--target", "x86", "-o", out])
    if result.exit_code == 0:
        assert (out / "manifest.json").is_file() and (out / "module.so").is_file()
        return
    assert_refused(result, out)
