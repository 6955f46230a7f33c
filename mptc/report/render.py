"""Markdown rendering of a sweep report."""

from __future__ import annotations

from typing import Any


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def _bytes(value: int | None) -> str:
    return "n/a" if value is None else f"{value:,} B"


def _kernel_table(points: list[dict[str, Any]]) -> list[str]:
    """Which kernel each ``ai.mptc`` layer took at each sweep point (the manifest's layer
    records): one row per layer, one column per point, ``kernel (layer sparsity)`` in a cell."""
    layers: dict[str, str] = {}  # name -> op_type, in the order of the first point that has it
    cells: dict[tuple[str, int], str] = {}
    for i, p in enumerate(points):
        for layer in p.get("kernels", []):
            name = layer.get("name", "?")
            layers.setdefault(name, layer.get("op_type") or "?")
            sparsity = layer.get("sparsity")
            cells[name, i] = layer.get("kernel", "?") + ("" if sparsity is None else f" ({sparsity:.2f})")
    if not layers:
        return ["## Kernels", "", "The points record no kernel choices."]
    lines = [
        "## Kernels",
        "",
        "The kernel each packed layer took at each sweep point, with the layer's own sparsity "
        "(`manifest.json`'s `layers`; why it was chosen is its `reason` there, and in `report.json`).",
        "",
        "| layer | op | " + " | ".join(f"sparsity {p['sparsity']:.2f}" for p in points) + " |",
        "|---|---|" + "---|" * len(points),
    ]
    for name, op_type in layers.items():
        row = " | ".join(cells.get((name, i), "-") for i in range(len(points)))
        lines.append(f"| `{name}` | {op_type} | {row} |")
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    points = report["points"]
    first = points[0]
    emulated = any(p["emulated"] for p in points)
    variant = " + binary activations (MPT-1/1)" if first["binary_act"] else ""
    variant += ", int8 activations" if first.get("activations") == "int8" else ""
    board = f", board `{report['board']}`" if report.get("board") else ""
    device = first["device"].get("description") if isinstance(first["device"], dict) else first["device"]
    lines = [
        f"# mptc sweep: {first['model']} {first['method']}{variant} on {first['dataset']}",
        "",
        f"Target `{report['target']}`{board}; device: {device}. "
        f"Batch {first['batch']}; latency is the median of {report['repeat']} runs.",
    ]
    if emulated:
        lines += [
            "",
            "**Latencies were measured on an EMULATED board (qemu user mode): they are smoke figures, 40-60x slower than the real board, not performance.**",
        ]
    int8 = any(p.get("activations") == "int8" for p in points)
    stages = [("pytorch", "PyTorch"), ("onnx", "ONNX (onnxruntime)"), ("packed_onnx", "packed ONNX")]
    stages += [("int8_onnx", "int8 ONNX (quantized activations)")] * int8 + [("module", "compiled module")]
    lines += [
        "",
        "## Accuracy at every stage (test split)",
        "",
        "| sparsity | " + " | ".join(title for _, title in stages) + " |",
        "|---|" + "---|" * len(stages),
    ]
    for p in points:
        a = p["accuracy"]
        lines.append(f"| {p['sparsity']:.2f} | " + " | ".join(_pct(a.get(key)) for key, _ in stages) + " |")
    int8_columns = " onnxruntime int8 (ms) | speed-up |" if int8 else ""
    lines += [
        "",
        "## Latency and size",
        "",
        "| sparsity | mptc module (ms) | onnxruntime fp32 (ms) | speed-up |"
        + int8_columns
        + " fp32 ONNX | packed ONNX | compiled module | ticket |",
        "|---|---|---|---|" + "---|---|" * int8 + "---|---|---|---|",
    ]
    for p in points:
        lat, size = p["latency_ms"], p["sizes"]
        peer = lat.get("onnxruntime_int8")
        versus_int8 = (
            (f" {peer['median']:.4f} | {p['speedup_vs_onnxruntime_int8']:.2f}x |" if peer else " n/a | n/a |")
            if int8
            else ""
        )
        lines.append(
            f"| {p['sparsity']:.2f} | {lat['module']['median']:.4f} | {lat['onnxruntime_fp32']['median']:.4f} | "
            f"{p['speedup_vs_onnxruntime_fp32']:.2f}x |{versus_int8} {_bytes(size.get('fp32_onnx_bytes'))} | "
            f"{_bytes(size.get('packed_onnx_bytes'))} | {_bytes(size.get('module_bytes'))} | {_bytes(size.get('ticket_bytes'))} |"
        )
    lines += [
        "",
        "The compiled module (`module.so`) holds the kernels' code and the weights in the layout "
        "its kernels read (`lowered_weight_bytes` in `manifest.json`: 2-bit planes for a dense-ternary "
        "layer, packed bits for an XNOR-popcount one, indices for a sparse one); the ONNX files hold "
        "the graph and its weights.",
        "",
        *_kernel_table(points),
        "",
        "The module's latency comes from TVM's time evaluator (no Python call overhead), onnxruntime's "
        "from `InferenceSession.run` called from Python (a few microseconds of call overhead): for "
        "models that run in tens of microseconds, compare with that in mind.",
        "",
        "![latency](latency.png) ![accuracy](accuracy.png) ![size](size.png)",
        "",
    ]
    return "\n".join(lines)
