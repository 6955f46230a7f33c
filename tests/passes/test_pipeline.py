import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from mptc.errors import InputError, OutputError, UnsupportedError
from mptc.ops.reference import DOMAIN
from mptc.passes.inspect import inspect_model
from mptc.passes.pipeline import IR_VERSION, load_model, optimize, optimize_file
from tests.passes.mptc_graphs import assert_equivalent, model_from_text, ops, ternary


class Builder:
    """A single-input float graph assembled node by node (for generated architectures)."""

    def __init__(self, rng, opset=19):
        self.rng, self.opset = rng, opset
        self.nodes, self.inits = [], []

    def const(self, name, array):
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def add(self, op_type, inputs, output, **attrs):
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=output, **attrs))
        return output

    def sign(self, x):
        zero, one, minus_one = (
            self.const(f"{x}.{n}", np.float32(v)) for n, v in (("zero", 0), ("one", 1), ("minus_one", -1))
        )
        return self.add("Where", [self.add("GreaterOrEqual", [x, zero], f"{x}.ge"), one, minus_one], f"{x}.sign")

    def batch_norm(self, x, channels):
        rng = self.rng
        params = [
            rng.uniform(0.5, 1.5, channels),
            rng.standard_normal(channels),
            rng.standard_normal(channels),
            rng.uniform(0.5, 1.5, channels),
        ]
        names = [self.const(f"{x}.bn{i}", p.astype(np.float32)) for i, p in enumerate(params)]
        return self.add("BatchNormalization", [x, *names], f"{x}.bn", epsilon=1e-3)

    def model(self, x_shape, y):
        graph = helper.make_graph(
            self.nodes,
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
            [helper.make_value_info(y, helper.make_tensor_type_proto(TensorProto.FLOAT, None))],
            self.inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)], ir_version=10)
        model = onnx.shape_inference.infer_shapes(model)
        return model


def conv_stack(rng, channels=(3, 8, 5), opset=19, sparsity=0.5):
    """Conv -> BN -> sign -> Conv -> BN -> sign -> Flatten -> Gemm, the MPT-1/1 shape."""
    b = Builder(rng, opset)
    h = "x"
    for i, (c_in, c_out) in enumerate(zip(channels, channels[1:])):
        w = b.const(f"w{i}", ternary(rng, (c_out, c_in, 3, 3), sparsity))
        h = b.sign(b.batch_norm(b.add("Conv", [h, w], f"conv{i}", pads=[1, 1, 1, 1]), c_out))
    flat = b.add("Flatten", [h], "flat")
    y = b.add("Gemm", [flat, b.const("fc", ternary(rng, (4, channels[-1] * 36), sparsity))], "y", transB=1)
    return b.model([2, channels[0], 6, 6], y)


def feeds(model, rng):
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = rng.standard_normal(dims).astype(np.float32)
    x.reshape(-1)[::7] = 0.0
    return {"x": x}


def test_conv_stack_is_packed_folded_and_runs(rng):
    model = conv_stack(rng)
    packed = optimize(model)
    onnx.checker.check_model(packed, full_check=True)
    assert ops(packed) == ["ai.mptc.BinaryConv", "ai.mptc.BinaryConv", "Flatten", "ai.mptc.BinaryDense"]
    assert packed.ir_version == IR_VERSION
    assert sorted(f.name for f in packed.functions) == ["BinaryConv", "BinaryDense"]
    assert {o.domain: o.version for o in packed.opset_import} == {"": 19, DOMAIN: 1}
    assert_equivalent(model, packed, feeds(model, rng))


def test_input_model_is_not_changed(rng):
    model = conv_stack(rng)
    before = model.SerializeToString()
    optimize(model)
    assert model.SerializeToString() == before


def test_old_opset_is_converted_up(rng):
    model = conv_stack(rng, opset=17)
    packed = optimize(model)
    assert {o.domain: o.version for o in packed.opset_import}[""] == 19
    assert_equivalent(model, packed, feeds(model, rng))


def test_packed_conv_stack_is_a_sixteenth_of_float32(rng):
    model = conv_stack(rng, channels=(128, 128, 128), sparsity=0.9)
    packed = optimize(model)
    float_bytes = sum(r.bytes for r in inspect_model(model))
    packed_bytes = sum(r.bytes for r in inspect_model(packed))
    assert 1 / 17 < packed_bytes / float_bytes < 1 / 14
    assert packed.ByteSize() < model.ByteSize() / 13


def test_second_run_keeps_the_packed_model(rng):
    packed = optimize(conv_stack(rng))
    again = optimize(packed)
    assert ops(again) == ops(packed)


def test_model_without_ternary_layer_names_each_candidate(rng):
    text = """<ir_version: 10, opset_import: ["" : 19]>
    g (float[1,2,4,4] x) => (float[n,o,h,w] y) { y = Conv (x, w) }"""
    model = model_from_text(text, w=rng.standard_normal((3, 2, 3, 3)).astype(np.float32))
    with pytest.raises(
        UnsupportedError, match=r"no ternary Conv/Gemm/MatMul layer to pack: y \(Conv\): weight is not ternary"
    ):
        optimize(model)


def test_model_without_candidates_says_so():
    model = model_from_text(
        '<ir_version: 10, opset_import: ["" : 19]>\ng (float[2] x) => (float[2] y) { y = Relu (x) }'
    )
    with pytest.raises(UnsupportedError, match="the model has no Conv, Gemm or MatMul"):
        optimize(model)


def test_invalid_model_is_an_input_error(rng):
    model = conv_stack(rng)
    model.graph.node[0].input[0] = "nowhere"
    with pytest.raises(InputError, match="not a valid ONNX model"):
        optimize(model)


def test_optimize_file_round_trip(tmp_path, rng):
    src, dst = tmp_path / "model.onnx", tmp_path / "packed.onnx"
    model = conv_stack(rng)
    onnx.save(model, src)
    optimize_file(src, dst)
    assert_equivalent(model, onnx.load(dst), feeds(model, rng))


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such file"),
        (b"", "no graph"),
        (b"\x08\x07\x12\xff\xff garbage \x00\x01", "corrupt or truncated"),
        ("half", "corrupt or truncated"),
    ],
    ids=["missing", "empty", "corrupt", "truncated"],
)
def test_unreadable_files_are_input_errors(tmp_path, rng, content, message):
    path = tmp_path / "model.onnx"
    if content == "half":
        data = conv_stack(rng).SerializeToString()
        path.write_bytes(data[: len(data) // 2])
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError, match=message) as raised:
        load_model(path)
    assert str(path) in str(raised.value) and "\n" not in str(raised.value)


def test_directory_is_not_a_model(tmp_path):
    with pytest.raises(InputError, match="not a file"):
        load_model(tmp_path)


def test_unwritable_output_is_an_output_error(tmp_path, rng):
    src = tmp_path / "model.onnx"
    onnx.save(conv_stack(rng), src)
    (tmp_path / "a_file").write_text("")
    with pytest.raises(OutputError, match="cannot write"):
        optimize_file(src, tmp_path / "a_file" / "packed.onnx")


@st.composite
def layer_graphs(draw):
    """A random conv layer (optional sign before, BN after) and optional dense head."""
    group = draw(st.sampled_from([1, 1, 2, 3]))
    c_in = group * draw(st.integers(1, 3))
    c_out = group * draw(st.integers(1, 4))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    pads = draw(st.lists(st.integers(0, 2), min_size=4, max_size=4))
    strides = [draw(st.integers(1, 2)), draw(st.integers(1, 2))]
    h = max(1, (kh - 1) * dh + 1 - pads[0] - pads[2]) + draw(st.integers(0, 4))
    w = max(1, (kw - 1) * dw + 1 - pads[1] - pads[3]) + draw(st.integers(0, 4))
    return {
        "n": draw(st.integers(1, 2)),
        "conv": dict(group=group, pads=pads, strides=strides, dilations=[dh, dw]),
        "shape": (c_out, c_in // group, kh, kw),
        "c_in": c_in,
        "hw": (h, w),
        "sparsity": draw(st.sampled_from([0.0, 0.3, 0.5, 0.9, 1.0])),
        "per_channel": draw(st.booleans()),
        "sign": draw(st.booleans()),
        "bn": draw(st.booleans()),
        "head": draw(st.sampled_from([None, "Gemm", "MatMul"])),
        "seed": draw(st.integers(0, 2**16)),
    }


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=layer_graphs())
def test_random_graphs_pack_without_changing_outputs(spec):
    rng = np.random.default_rng(spec["seed"])
    b = Builder(rng)
    x = b.sign("x") if spec["sign"] else "x"
    w = b.const("w", ternary(rng, spec["shape"], spec["sparsity"], spec["per_channel"]))
    bias = b.const("bias", rng.standard_normal(spec["shape"][0]).astype(np.float32))
    y = b.add("Conv", [x, w, bias], "conv", **spec["conv"])
    if spec["bn"]:
        y = b.batch_norm(y, spec["shape"][0])
    if spec["head"]:
        n_out = spec["shape"][0]
        flat = b.add("Flatten", [b.sign(y) if spec["sign"] else y], "flat")
        model = b.model([spec["n"], spec["c_in"], *spec["hw"]], flat)
        k = model.graph.output[0].type.tensor_type.shape.dim[1].dim_value
        fc = ternary(rng, (n_out + 1, k), spec["sparsity"], spec["per_channel"])
        y = b.add(
            spec["head"],
            [flat, b.const("fc", fc if spec["head"] == "Gemm" else fc.T.copy())],
            "y",
            **({"transB": 1} if spec["head"] == "Gemm" else {}),
        )
    model = b.model([spec["n"], spec["c_in"], *spec["hw"]], y)
    grouped = spec["conv"]["group"] != 1  # stays an fp32 Conv (with its BN and the sign before it)
    if grouped and not spec["head"]:
        with pytest.raises(UnsupportedError, match=r"grouped convolution \(group=\d\)"):
            optimize(model)
        return
    packed = optimize(model)
    forbidden = {"Gemm", "MatMul"} | (set() if grouped else {"Conv", "BatchNormalization"})
    assert not forbidden & set(ops(packed))
    assert ops(packed).count("Conv") == int(grouped)
    assert ops(packed).count("Where") == int(grouped and spec["sign"])
    assert_equivalent(model, packed, feeds(model, rng))


def test_constant_nodes_become_initializers(rng):
    text = """<ir_version: 10, opset_import: ["" : 19]>
    g (float[2,3,2,2] x) => (float[n,o] y) {
      shape = Constant <value_ints = [2, 12]> ()
      f = Reshape (x, shape)
      y = Gemm <transB = 1> (f, w)
    }"""
    model = model_from_text(text, w=ternary(rng, (5, 12)))
    packed = optimize(model)
    assert ops(packed) == ["Reshape", "ai.mptc.BinaryDense"]
    assert_equivalent(model, packed, feeds(model, rng))


def test_nothing_to_pack_message_stays_short(rng):
    b = Builder(rng)
    h = "x"
    for i in range(5):
        h = b.add("Conv", [h, b.const(f"w{i}", rng.standard_normal((2, 2, 1, 1)).astype(np.float32))], f"conv{i}")
    with pytest.raises(UnsupportedError, match=r"conv2 \(Conv\): weight is not ternary[^;]*; and 2 more$"):
        optimize(b.model([1, 2, 3, 3], h))
