import json

import pytest
from click.testing import CliRunner

from mptc.cli import main
from mptc.targets.chooser import BLOCK_SPARSE, DENSE_FP32, DENSE_TERNARY, INT8_DOT, SPARSE_SIGN_SPLIT, XNOR_POPCOUNT
from mptc.targets.target import resolve_target

pytestmark = pytest.mark.slow
KERNELS = {BLOCK_SPARSE, DENSE_FP32, DENSE_TERNARY, SPARSE_SIGN_SPLIT, XNOR_POPCOUNT}
ARGS = ["--width", "0.25", "--epochs", "2", "--sparsity", "0.5,0.7,0.9", "--repeat", "3"]


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "report"
    result = CliRunner().invoke(main, ["sweep", *ARGS, "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.count("sparsity 0.") == 3
    return out


def test_sweep_writes_report_plots_and_every_stage(sweep_dir):
    report = json.loads((sweep_dir / "report.json").read_text())
    assert [p["sparsity"] for p in report["points"]] == [0.5, 0.7, 0.9]
    for point in report["points"]:
        accuracy = point["accuracy"]
        assert set(accuracy) == {"pytorch", "onnx", "packed_onnx", "module"}
        assert all(value is not None and value > 0.5 for value in accuracy.values())
        assert abs(accuracy["module"] - accuracy["pytorch"]) <= 0.01
        assert point["latency_ms"]["module"]["median"] > 0 and point["latency_ms"]["onnxruntime_fp32"]["median"] > 0
        assert point["sizes"]["packed_onnx_bytes"] * 5 < point["sizes"]["fp32_onnx_bytes"]  # tiny model: fixed overhead
        assert not point["emulated"]
    markdown = (sweep_dir / "report.md").read_text()
    assert "Accuracy at every stage" in markdown and "| 0.90 |" in markdown
    assert "| fp32 ONNX | packed ONNX | compiled module | ticket |" in markdown
    for point in report["points"]:
        assert point["sizes"]["module_bytes"] > 0 and f"{point['sizes']['module_bytes']:,} B" in markdown
        assert point["kernels"], "every point records the kernel of each packed layer"
        for layer in point["kernels"]:
            assert layer["op_type"] == "BinaryDense" and layer["kernel"] in KERNELS
            assert f"| `{layer['name']}` | BinaryDense |" in markdown
            assert f"{layer['kernel']} ({layer['sparsity']:.2f})" in markdown
    for name in ("latency.png", "accuracy.png", "size.png"):
        assert (sweep_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sweep_reuses_finished_points(sweep_dir):
    before = {p: p.stat().st_mtime_ns for p in sweep_dir.glob("sparsity-*/point.json")}
    result = CliRunner().invoke(main, ["sweep", *ARGS, "-o", str(sweep_dir)])
    assert result.exit_code == 0, result.output
    assert {p: p.stat().st_mtime_ns for p in sweep_dir.glob("sparsity-*/point.json")} == before


def test_int8_activations_are_a_point_of_their_own(sweep_dir):
    """The fp32 point is not reused for int8 (its training is): the int8 one reports the quantized
    model's accuracy, onnxruntime's static INT8 latency and the int8 kernels."""
    trained = (sweep_dir / "sparsity-0.5" / "run" / "metrics.json").stat().st_mtime_ns
    args = [*ARGS[:4], "--sparsity", "0.5", "--repeat", "3", "--activations", "int8", "-o", str(sweep_dir)]
    result = CliRunner().invoke(main, ["sweep", *args])
    assert result.exit_code == 0, result.output
    assert "onnxruntime int8" in result.output
    assert (sweep_dir / "sparsity-0.5" / "run" / "metrics.json").stat().st_mtime_ns == trained
    [point] = json.loads((sweep_dir / "report.json").read_text())["points"]
    assert point["activations"] == "int8"
    accuracy = point["accuracy"]
    assert set(accuracy) == {"pytorch", "onnx", "packed_onnx", "int8_onnx", "module"}
    assert abs(accuracy["module"] - accuracy["pytorch"]) <= 0.01
    if resolve_target("x86").has_avx512_vnni:  # else the QDQ pairs run as TVM's ops
        assert {layer["kernel"] for layer in point["kernels"]} == {INT8_DOT}
    assert point["latency_ms"]["onnxruntime_int8"]["median"] > 0 and point["speedup_vs_onnxruntime_int8"] > 0
    markdown = (sweep_dir / "report.md").read_text()
    assert "int8 activations" in markdown and "| onnxruntime int8 (ms) |" in markdown


def test_bad_sparsity_list_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(main, ["sweep", "--sparsity", "0.5,1.2", "-o", str(tmp_path / "r")])
    assert result.exit_code == 2 and "fraction pruned" in result.output
