"""Packed models whose nodes were edited: attributes of the wrong type or a degenerate value
(``group`` 0, ``pad_value`` NaN, ``kernel_shape`` the bits cannot hold, ``input_mode`` an int),
unknown or missing attributes, and packed tensors that disagree with them (empty or non-finite
``scale``, zero outputs, pad bits set past ``K``), on ``ai.mptc`` nodes and on the ONNX nodes
between them; and nodes with more inputs or outputs than mptc reads.

Each edited model goes through ``mptc inspect``, ``mptc optimize`` and ``mptc compile``. A command
either succeeds (optimize: a model the ONNX checker takes; compile: a module whose output on the
folder's reference input is the reference output) or refuses the model with exit 3 or 4 (5 where
the edited model's own output is NaN or Inf) in one line. Every value a spec'd attribute may not
take is refused by all three: ``mptc.ops.validate`` is the one place that says so.
"""

from __future__ import annotations

import math
import time

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import AttributeProto, helper, numpy_helper

from mptc.ops.reference import DOMAIN
from mptc.ops.schema import schemas
from mptc.pipeline import module_logits
from tests.robustness.harness import FUZZ, assert_refused, invoke, record

REFUSED = frozenset({3, 4})
COMPILE_REFUSED = frozenset({3, 4, 5})
SOURCES = ("packed", "conv_packed")

A = AttributeProto
ATTRIBUTE_VALUES = {
    A.INT: st.sampled_from([0, -1, -7, 1, 2, 3, 2**16 + 1, 2**40]) | st.integers(-3, 9),
    A.FLOAT: st.sampled_from([math.nan, math.inf, -math.inf, 1e30, 0.5, -0.5, 2.0, -1.0, 0.0, 1.0]),
    A.STRING: st.sampled_from([b"real", b"binary", b"", b"BINARY", b"bin", b"real\0"]),
    A.INTS: st.lists(st.integers(-2, 9) | st.sampled_from([2**20, -(2**40)]), max_size=6),
    A.FLOATS: st.lists(st.sampled_from([1.0, 0.0, math.nan]), max_size=4),
    A.STRINGS: st.lists(st.sampled_from([b"real", b"x"]), max_size=2),
}
TENSOR_EDITS = (
    "nan",
    "inf",
    "-inf",
    "huge",
    "zero",
    "truncate",
    "extend",
    "empty",
    "float64",
    "int32",
    "pad bits",
    "zero rows",
    "short rows",
    "long rows",
    "all ones",
)


def make_attribute(name: str, kind: int, value) -> AttributeProto:
    """An attribute of exactly ``kind`` (``helper.make_attribute`` infers it, and not for ``[]``)."""
    attribute = AttributeProto(name=name, type=kind)
    if kind in (A.INT, A.FLOAT):
        setattr(attribute, "i" if kind == A.INT else "f", value)
    elif kind == A.STRING:
        attribute.s = value
    else:
        getattr(attribute, {A.INTS: "ints", A.FLOATS: "floats", A.STRINGS: "strings"}[kind]).extend(value)
    return attribute


def declared_attributes(node: onnx.NodeProto, opset: int) -> dict[str, int | None]:
    """``{name: type}`` of the attributes its schema declares, and one it does not (type None)."""
    schema = schemas()[node.op_type] if node.domain == DOMAIN else onnx.defs.get_schema(node.op_type, opset, "")
    return {**{name: int(a.type.value) for name, a in sorted(schema.attributes.items())}, "bogus": None}


@st.composite
def edit(draw, model: onnx.ModelProto):
    """One change to ``model``: ``("set", node, AttributeProto)``, ``("drop", node, name)`` or
    ``("tensor", node, input index, how)`` (the last on ``ai.mptc`` nodes only)."""
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    index = draw(st.integers(0, len(model.graph.node) - 1))
    node = model.graph.node[index]
    how = draw(st.sampled_from(("set", "set", "drop", "tensor") if node.domain == DOMAIN else ("set", "drop")))
    if how == "tensor":
        return how, index, draw(st.integers(1, 4)), draw(st.sampled_from(TENSOR_EDITS))
    declared = declared_attributes(node, opset)
    name = draw(st.sampled_from([name for name in declared if declared[name]] * 3 + ["bogus"]))
    if how == "drop":
        return how, index, name
    # Mostly the declared type, so that values, not only types, get tried.
    kinds = sorted(ATTRIBUTE_VALUES) + [declared[name]] * len(ATTRIBUTE_VALUES) if declared[name] else []
    kind = draw(st.sampled_from(kinds or sorted(ATTRIBUTE_VALUES)))
    return how, index, make_attribute(name, kind, draw(ATTRIBUTE_VALUES[kind]))


def edit_tensor(array: np.ndarray, how: str) -> np.ndarray:
    """``array`` (a packed op's bits, scale or bias) changed as ``how`` says."""
    array = array.copy()
    flat = array.reshape(-1)
    if how in ("nan", "inf", "-inf", "huge", "zero") and array.dtype.kind == "f":
        flat[len(flat) // 2] = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf, "huge": 3e38, "zero": 0.0}[how]
        return array
    if how == "truncate":
        return array[: len(array) - 1]
    if how == "extend":
        return np.concatenate([array, array[:1]])
    if how == "empty":
        return array[:0]
    if how in ("float64", "int32"):
        return array.astype(how)
    if array.dtype == np.uint8 and array.ndim == 2:
        if how == "pad bits":
            array[:, -1] |= 0x80
        elif how == "zero rows":
            return array[:0]
        elif how == "short rows":
            return array[:, :-1]
        elif how == "long rows":
            return np.concatenate([array, array[:, :1]], axis=1)
        elif how == "all ones":
            array[:] = 0xFF
    return array


def edited(model: onnx.ModelProto, edits) -> onnx.ModelProto:
    result = onnx.ModelProto()
    result.CopyFrom(model)
    initializers = {tensor.name: tensor for tensor in result.graph.initializer}
    for how, index, *rest in edits:
        node = result.graph.node[index]
        if how == "tensor":
            position, change = rest
            tensor = initializers[node.input[position]]
            tensor.CopyFrom(numpy_helper.from_array(edit_tensor(numpy_helper.to_array(tensor), change), tensor.name))
            continue
        name = rest[0] if how == "drop" else rest[0].name
        kept = [a for a in node.attribute if a.name != name]
        del node.attribute[:]
        node.attribute.extend(kept + ([rest[0]] if how == "set" else []))
    return result


def sources(artifacts) -> dict[str, onnx.ModelProto]:
    return {name: onnx.load(getattr(artifacts, name)) for name in SOURCES}


def assert_module_matches_reference(out) -> None:
    with np.load(out / "reference.npz") as reference:
        x, y = reference["x"], reference["y"]
    assert np.isfinite(y).all(), "compile wrote a reference that is not finite"
    got = module_logits(out / "module.so", x, x.shape[0])
    assert np.abs(got - y).max() <= 1e-4 * max(float(np.abs(y).max()), 1.0), "the module disagrees with its reference"


def inspect_and_optimize(model: onnx.ModelProto, folder) -> None:
    path, out = folder / "edited.onnx", folder / "out.onnx"
    data = model.SerializeToString()
    path.write_bytes(data)
    for command in ("inspect", "optimize"):
        out.unlink(missing_ok=True)
        record(command, data)
        result = invoke([command, path, "-o", out] if command == "optimize" else [command, path])
        if result.exit_code == 0:
            if command == "optimize":
                onnx.checker.check_model(onnx.load(out))
            continue
        assert_refused(result, *([out] if command == "optimize" else []), codes=REFUSED)


def compile_edited(model: onnx.ModelProto, folder) -> None:
    path, out = folder / "edited.onnx", folder / "module"
    data = model.SerializeToString()
    path.write_bytes(data)
    record("compile", data)
    result = invoke(["compile", path, "--target", "x86", "-o", out])
    if result.exit_code == 0:
        assert_module_matches_reference(out)
        return
    assert_refused(result, out, codes=COMPILE_REFUSED)
    if result.exit_code == 5:
        assert "NaN or Inf" in result.stderr


def test_edited_nodes_through_inspect_and_optimize(artifacts, tmp_path_factory):
    models = sources(artifacts)

    @settings(FUZZ, max_examples=80)
    @given(data=st.data())
    def check(data) -> None:
        model = models[data.draw(st.sampled_from(SOURCES))]
        edits = data.draw(st.lists(edit(model), min_size=1, max_size=3))
        inspect_and_optimize(edited(model, edits), tmp_path_factory.mktemp("edited"))

    check()


def test_edited_nodes_through_compile(artifacts, tmp_path_factory):
    """Fewer examples: a model that imports is built (a second or two each)."""
    models = sources(artifacts)

    @settings(FUZZ, max_examples=25)
    @given(data=st.data())
    def check(data) -> None:
        model = models[data.draw(st.sampled_from(SOURCES))]
        edits = data.draw(st.lists(edit(model), min_size=1, max_size=2))
        compile_edited(edited(model, edits), tmp_path_factory.mktemp("compiled"))

    check()


def binary_conv(model: onnx.ModelProto) -> int:
    """Index of the first binary-input BinaryConv with padding (where pad_value matters)."""
    return next(
        index
        for index, node in enumerate(model.graph.node)
        if node.op_type == "BinaryConv"
        and any(a.name == "input_mode" and a.s == b"binary" for a in node.attribute)
        and any(a.name == "pads" and any(a.ints) for a in node.attribute)
    )


def first_conv(model: onnx.ModelProto) -> int:
    return next(index for index, node in enumerate(model.graph.node) if node.op_type == "BinaryConv")


@pytest.mark.parametrize("mode", ["real", "binary"])
@pytest.mark.parametrize("pad_value", [math.nan, math.inf, -math.inf, 1e30, 0.5, -0.5, 2.0, -2.0])
def test_illegal_pad_values_are_refused_everywhere(mode, pad_value, artifacts, tmp_path):
    """docs/operators.md: 0 in real mode, -1, 0 or +1 in binary mode; anything else compiled into a
    module that disagreed with its own reference (a NaN border table), with exit 0."""
    model = onnx.load(artifacts.conv_packed)
    index = binary_conv(model) if mode == "binary" else first_conv(model)
    changed = edited(model, [("set", index, make_attribute("pad_value", A.FLOAT, pad_value))])
    path, out = tmp_path / "edited.onnx", tmp_path / "out"
    path.write_bytes(changed.SerializeToString())
    for args in (["inspect", path], ["optimize", path, "-o", out], ["compile", path, "--target", "x86", "-o", out]):
        record(*map(str, args), str(pad_value))
        result = invoke(args)
        assert_refused(result, out, codes=frozenset({3}))
        assert "pad_value must be" in result.stderr


@pytest.mark.parametrize("pad_value", [-1.0, 0.0, 1.0])
def test_legal_sign_pad_values_compile_to_their_reference(pad_value, artifacts, tmp_path):
    model = onnx.load(artifacts.conv_packed)
    changed = edited(model, [("set", binary_conv(model), make_attribute("pad_value", A.FLOAT, pad_value))])
    compile_edited(changed, tmp_path)
    assert (tmp_path / "module" / "module.so").is_file()


def many_values(model: onnx.ModelProto, where: str) -> onnx.ModelProto:
    """100,000 inputs (or outputs) on one node: a Sum before the first Relu, or the packed op itself."""
    result = onnx.ModelProto()
    result.CopyFrom(model)
    nodes = result.graph.node
    if where == "sum":
        index = next(i for i, node in enumerate(nodes) if node.op_type == "Relu")
        nodes.insert(index, helper.make_node("Sum", [nodes[index].input[0]] * 100_000, ["summed"], name="many"))
        nodes[index + 1].input[0] = "summed"
    elif where == "packed inputs":
        node = next(node for node in nodes if node.domain == DOMAIN)
        node.input.extend([node.input[1]] * 100_000)
    else:
        node = next(node for node in nodes if node.op_type == "Relu")
        node.output.extend(f"extra{i}" for i in range(100_000))
    return result


@pytest.mark.parametrize("where", ["sum", "packed inputs", "outputs"])
@pytest.mark.parametrize("command", ["inspect", "optimize", "compile"])
def test_nodes_with_100000_values_are_refused_quickly(where, command, artifacts, tmp_path):
    """A Sum of 100,000 inputs made ``mptc optimize`` hang (onnx_ir rewires each use in time
    proportional to the node's inputs)."""
    path, out = tmp_path / "many.onnx", tmp_path / "out"
    data = many_values(onnx.load(artifacts.packed), where).SerializeToString()
    path.write_bytes(data)
    record(command, where, data)
    args = {"inspect": [path], "optimize": [path, "-o", out], "compile": [path, "--target", "x86", "-o", out]}
    start = time.monotonic()
    result = invoke([command, *args[command]])
    assert time.monotonic() - start < 30
    assert_refused(result, out, codes=REFUSED)
