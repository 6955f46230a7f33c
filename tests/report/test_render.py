"""report.md and the plots from hand-written sweep points (no training, no compile)."""

from mptc.report.plots import plot_sweep
from mptc.report.render import render_markdown

PNG = b"\x89PNG\r\n\x1a\n"


def _point(sparsity: float, kernel: str, module_bytes: int | None = 120_000) -> dict:
    sizes = {"fp32_onnx_bytes": 1_208_320, "packed_onnx_bytes": 47_316, "ticket_bytes": 47_316}
    if module_bytes is not None:
        sizes["module_bytes"] = module_bytes
    return {
        "sparsity": sparsity,
        "method": "biprop",
        "binary_act": False,
        "model": "mlp",
        "dataset": "digits",
        "accuracy": {"pytorch": 0.98, "onnx": 0.98, "packed_onnx": 0.98, "module": 0.98},
        "latency_ms": {"module": {"median": 0.013}, "onnxruntime_fp32": {"median": 0.030}},
        "speedup_vs_onnxruntime_fp32": 2.3,
        "emulated": False,
        "device": "this host",
        "batch": 1,
        "sizes": sizes,
        "kernels": [
            {"name": "fc1", "op_type": "BinaryDense", "sparsity": sparsity, "kernel": kernel, "reason": "r"},
            {"name": "fc2", "op_type": "BinaryDense", "sparsity": sparsity, "kernel": "dense-fp32", "reason": "r"},
        ],
    }


def _report(points: list[dict]) -> dict:
    return {"target": "x86", "board": None, "repeat": 3, "points": points}


def test_report_names_each_layers_kernel_per_point():
    markdown = render_markdown(_report([_point(0.5, "dense-fp32"), _point(0.95, "sparse-sign-split")]))
    assert "## Kernels" in markdown
    assert "| layer | op | sparsity 0.50 | sparsity 0.95 |" in markdown
    assert "| `fc1` | BinaryDense | dense-fp32 (0.50) | sparse-sign-split (0.95) |" in markdown
    assert "| `fc2` | BinaryDense | dense-fp32 (0.50) | dense-fp32 (0.95) |" in markdown


def test_report_gives_module_size_beside_onnx_sizes():
    markdown = render_markdown(_report([_point(0.5, "dense-fp32")]))
    assert "| fp32 ONNX | packed ONNX | compiled module | ticket |" in markdown
    assert "| 1,208,320 B | 47,316 B | 120,000 B | 47,316 B |" in markdown


def test_report_of_points_without_module_size_or_kernels():
    """Points written before the record carried them still render."""
    point = _point(0.5, "dense-fp32", module_bytes=None)
    del point["kernels"]
    markdown = render_markdown(_report([point]))
    assert "| 47,316 B | n/a | 47,316 B |" in markdown
    assert "record no kernel choices" in markdown


def test_plots_of_points_with_missing_module_accuracy(tmp_path):
    points = [_point(s, "dense-fp32") for s in (0.5, 0.7, 0.9)]
    points[1]["accuracy"]["module"] = None  # not built for this host
    paths = plot_sweep(points, tmp_path, "mlp biprop")
    assert [p.name for p in paths] == ["latency.png", "accuracy.png", "size.png"]
    assert all(p.read_bytes()[:8] == PNG for p in paths)
