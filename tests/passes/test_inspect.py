import numpy as np
import onnx
import pytest

from mptc.passes.inspect import LayerRow, inspect_model, render_table
from mptc.passes.pipeline import optimize
from tests.passes.mptc_graphs import model_from_text, ternary

TEXT = """<ir_version: 10, opset_import: ["" : 19]>
g (float[2,3,5,5] x) => (float[n,o] y) {
  c = Conv <pads = [1, 1, 1, 1]> (x, w, b)
  f = Flatten (c)
  y = MatMul (f, fc)
}"""


@pytest.fixture
def model(rng):
    weight = ternary(rng, (4, 3, 3, 3), sparsity=0.5, per_channel=False)
    weight[0] = 0.0
    return model_from_text(TEXT, w=weight, b=np.zeros(4, np.float32), fc=ternary(rng, (7, 100), sparsity=0.75).T.copy())


def test_unpacked_rows(model):
    conv, dense = inspect_model(model)
    weight = onnx.numpy_helper.to_array(model.graph.initializer[0])
    assert (conv.op, conv.name, conv.weight_shape) == ("Conv", "c", (4, 3, 3, 3))
    assert conv.sparsity == pytest.approx(np.mean(weight == 0))
    assert conv.scale_min == conv.scale_max == pytest.approx(np.abs(weight).max())
    assert conv.bits_per_weight == 32 and conv.bytes == 4 * (4 * 27 + 4)
    assert (dense.op, dense.weight_shape) == ("MatMul", (7, 100))


def test_packed_rows_match_the_unpacked_ones(model):
    before = inspect_model(model)
    after = inspect_model(optimize(model))
    assert [r.op for r in after] == ["BinaryConv", "BinaryDense"]
    for unpacked, packed in zip(before, after):
        assert packed.weight_shape == unpacked.weight_shape
        assert packed.sparsity == pytest.approx(unpacked.sparsity)
        assert packed.scale_max == pytest.approx(unpacked.scale_max)
    assert after[0].bits_per_weight == pytest.approx(2 * 4 * 4 * 8 / (4 * 27))  # 27 taps pad to 4 bytes a row
    assert after[1].bits_per_weight == pytest.approx(2 * 13 * 8 / 100)
    assert after[0].bytes == 2 * 4 * 4 + 4 * 4 + 4 * 4


def test_non_ternary_float_layer_has_no_alpha(rng):
    text = '<ir_version: 10, opset_import: ["" : 19]>\ng (float[2,3] x) => (float[n,o] y) { y = Gemm (x, w) }'
    (row,) = inspect_model(model_from_text(text, w=rng.standard_normal((3, 4)).astype(np.float32)))
    assert row.scale_min is None and row.weight_shape == (4, 3)


def test_unknown_input_shape_leaves_packed_counts_unknown(model):
    packed = optimize(model)
    packed.graph.input[0].type.tensor_type.shape.dim[1].dim_param = "c"
    conv = inspect_model(packed)[0]
    assert conv.weight_shape == (4, None, 3, 3) and conv.sparsity is None and conv.bits_per_weight is None


def test_packed_rows_show_the_input_mode(rng):
    text = """<ir_version: 10, opset_import: ["" : 19]>
    g (float[2,3,5,5] x) => (float[n,o] y) <float zero = {0.0}, float one = {1.0}, float minus_one = {-1.0}> {
      c = Conv <pads = [1, 1, 1, 1]> (x, w)
      ge = GreaterOrEqual (c, zero)
      s = Where (ge, one, minus_one)
      f = Flatten (s)
      y = Gemm <transB = 1> (f, fc)
    }"""
    model = model_from_text(text, w=ternary(rng, (4, 3, 3, 3)), fc=ternary(rng, (7, 100)))
    assert [row.input_mode for row in inspect_model(model)] == [None, None]
    assert [(row.op, row.input_mode) for row in inspect_model(optimize(model))] == [
        ("BinaryConv", "real"),
        ("BinaryDense", "binary"),
    ]


ROWS = [
    LayerRow("BinaryConv", "conv1", (4, 3, 3, 3), 0.5, 0.25, 0.75, 2.37, 64, "binary"),
    LayerRow("Gemm", "fc", (7, 100), 0.0, None, None, 32.0, 2828),
]


def test_markdown_table():
    lines = render_table(ROWS).splitlines()
    assert lines[0] == "| layer | op | input | weight shape | sparsity | alpha / scale | bits/weight | bytes |"
    assert lines[2] == "| conv1 | BinaryConv | binary | 4x3x3x3 | 50.0% | 0.25..0.75 | 2.37 | 64 |"
    assert lines[3] == "| fc | Gemm | - | 7x100 | 0.0% | - | 32.00 | 2,828 |"
    assert lines[4].startswith("| total |") and lines[4].endswith("| 2,892 |")


def test_plain_table_is_aligned():
    lines = render_table(ROWS, markdown=False).splitlines()
    assert len(lines) == 4 and lines[0].startswith("layer")
    assert len({line.index(" BinaryConv") if "BinaryConv" in line else None for line in lines} - {None}) == 1
    assert lines[1].split()[:4] == ["conv1", "BinaryConv", "binary", "4x3x3x3"]
