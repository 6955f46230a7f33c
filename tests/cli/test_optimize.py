"""``mptc optimize`` / ``mptc inspect`` (mptc/cli/optimize.py) through click's CliRunner."""

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from mptc.cli import main
from tests.passes.mptc_graphs import model_from_text, ternary

TEXT = """<ir_version: 10, opset_import: ["" : 19]>
g (float[1,3,6,6] x) => (float[n,o] y) <float zero = {0.0}, float one = {1.0}, float minus_one = {-1.0}> {
  c = Conv <pads = [1, 1, 1, 1]> (x, w)
  ge = GreaterOrEqual (c, zero)
  s = Where (ge, one, minus_one)
  f = Flatten (s)
  y = Gemm <transB = 1> (f, fc)
}"""


@pytest.fixture
def model_path(tmp_path, rng):
    path = tmp_path / "model.onnx"
    onnx.save(model_from_text(TEXT, w=ternary(rng, (4, 3, 3, 3)), fc=ternary(rng, (5, 144))), path)
    return path


def test_optimize_writes_a_packed_model(tmp_path, model_path):
    out = tmp_path / "packed.onnx"
    result = CliRunner().invoke(main, ["optimize", str(model_path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"wrote {out}: 2 packed layer(s)")
    assert {n.op_type for n in onnx.load(out).graph.node} == {"BinaryConv", "Flatten", "BinaryDense"}


@pytest.mark.parametrize("flags, first_line", [([], "| layer | op |"), (["--plain"], "layer  op")])
def test_inspect_prints_a_table(model_path, flags, first_line):
    result = CliRunner().invoke(main, ["inspect", *flags, str(model_path)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(first_line) and any("Conv" in line and "4x3x3x3" in line for line in lines)


def test_inspect_shows_each_packed_layer_input_mode(tmp_path, model_path):
    out = tmp_path / "packed.onnx"
    assert CliRunner().invoke(main, ["optimize", str(model_path), "-o", str(out)]).exit_code == 0
    result = CliRunner().invoke(main, ["inspect", str(out)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("| layer | op | input | weight shape |")
    assert lines[2].startswith("| c | BinaryConv | real | 4x3x3x3 |")
    assert lines[3].startswith("| y | BinaryDense | binary | 5x144 |")


@pytest.mark.parametrize("command", ["optimize", "inspect"])
def test_help_teaches_with_an_example(command):
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0 and "Example:" in result.output and "mptc optimize" in result.output


def bad_file(tmp_path, kind):
    path = tmp_path / "bad.onnx"
    if kind == "corrupt":
        path.write_bytes(b"\x08\x07\x12\xff\xff not onnx at all \x00")
    elif kind == "truncated":
        data = model_from_text(
            TEXT, w=ternary(np.random.default_rng(0), (4, 3, 3, 3)), fc=ternary(np.random.default_rng(1), (5, 144))
        ).SerializeToString()
        path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize("command", ["optimize", "inspect"])
@pytest.mark.parametrize("kind, code", [("missing", 3), ("corrupt", 3), ("truncated", 3)])
def test_bad_input_is_one_line_without_traceback(tmp_path, command, kind, code):
    args = [command, str(bad_file(tmp_path, kind))] + (
        ["-o", str(tmp_path / "out.onnx")] if command == "optimize" else []
    )
    result = CliRunner().invoke(main, args)
    assert result.exit_code == code
    assert len(result.output.strip().splitlines()) == 1 and result.output.startswith("mptc: error: ")
    assert "Traceback" not in result.output and "bad.onnx" in result.output


def test_model_without_ternary_layer_exits_4(tmp_path, rng):
    path = tmp_path / "float.onnx"
    onnx.save(
        model_from_text(
            TEXT,
            w=rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
            fc=rng.standard_normal((5, 144)).astype(np.float32),
        ),
        path,
    )
    result = CliRunner().invoke(main, ["optimize", str(path), "-o", str(tmp_path / "out.onnx")])
    assert result.exit_code == 4 and len(result.output.strip().splitlines()) == 1
    assert "no ternary Conv/Gemm/MatMul layer to pack: c (Conv): weight is not ternary" in result.output


LEFT_ALONE = """<ir_version: 10, opset_import: ["" : 19]>
g (float[1,3,6,6] x, float[1,4,6,6] r) => (float[n,o] y) <float zero = {0.0}, float one = {1.0}, float minus_one = {-1.0}> {
  g = Greater (x, zero)
  s = Where (g, one, minus_one)
  c = Conv <pads = [1, 1, 1, 1]> (s, w)
  a = Add (c, r)
  f = Flatten (a)
  y = Gemm <transB = 1> (f, fc)
}"""


@pytest.mark.parametrize("flags", [[], ["-v"]])
def test_verbose_says_why_each_candidate_was_left_alone(tmp_path, rng, flags):
    path, out = tmp_path / "model.onnx", tmp_path / "packed.onnx"
    onnx.save(
        model_from_text(LEFT_ALONE, w=ternary(rng, (4, 3, 3, 3)), fc=rng.standard_normal((5, 144)).astype(np.float32)),
        path,
    )
    result = CliRunner().invoke(main, ["optimize", *flags, str(path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    reasons = [
        "PackTernaryWeightsPass left y (Gemm): weight is not ternary ({-a, 0, +a} per output row)",
        "FoldSignIntoBinaryInputPass left c (BinaryConv): g (Greater) is not one of x >= 0, 0 <= x, x < 0, 0 > x, "
        "the forms with sign(0) = +1",
        "FoldBatchNormIntoScalePass left c (BinaryConv): a (Add)'s other operand is not a constant per output channel",
    ]
    lines = result.output.splitlines()
    assert lines[:-1] == (reasons if flags else [])
    assert lines[-1].startswith(f"wrote {out}: 1 packed layer(s)")


@pytest.mark.parametrize(
    "opset, sign_lines, constants, reason",
    [
        (
            '"" : 19',
            "g = Greater (x, zero)\n  s = Where (g, one, minus_one)",
            "<float zero = {0.0}, float one = {1.0}, float minus_one = {-1.0}>",
            "g (Greater) is not one of x >= 0, 0 <= x, x < 0, 0 > x, the forms with sign(0) = +1",
        ),
        (
            '"" : 19, "qonnx.custom_op.general" : 1',
            "s = qonnx.custom_op.general.BipolarQuant (x, k)",
            "<float k = {0.5}>",
            "s (BipolarQuant) has scale 0.5; only BipolarQuant with scale 1 folds",
        ),
    ],
    ids=["strict_greater", "bipolar_scale_half"],
)
def test_verbose_names_each_sign_near_miss(tmp_path, rng, opset, sign_lines, constants, reason):
    text = f"""<ir_version: 10, opset_import: [{opset}]>
g (float[1,3,6,6] x) => (float[n,o,h,w] y) {constants} {{
  {sign_lines}
  y = Conv <pads = [1, 1, 1, 1]> (s, w)
}}"""
    path, out = tmp_path / "model.onnx", tmp_path / "packed.onnx"
    onnx.save(model_from_text(text, w=ternary(rng, (4, 3, 3, 3))), path)
    result = CliRunner().invoke(main, ["optimize", "-v", str(path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == f"FoldSignIntoBinaryInputPass left y (BinaryConv): {reason}"
    assert "| y | BinaryConv | real |" in CliRunner().invoke(main, ["inspect", str(out)]).output
