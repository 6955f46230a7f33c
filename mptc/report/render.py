"""Markdown rendering of a sweep report."""

from __future__ import annotations

from typing import Any


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def render_markdown(report: dict[str, Any]) -> str:
    points = report["points"]
    first = points[0]
    emulated = any(p["emulated"] for p in points)
    variant = " + binary activations (MPT-1/1)" if first["binary_act"] else ""
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
    lines += [
        "",
        "## Accuracy at every stage (test split)",
        "",
        "| sparsity | PyTorch | ONNX (onnxruntime) | packed ONNX | compiled module |",
        "|---|---|---|---|---|",
    ]
    for p in points:
        a = p["accuracy"]
        lines.append(
            f"| {p['sparsity']:.2f} | {_pct(a['pytorch'])} | {_pct(a['onnx'])} | {_pct(a['packed_onnx'])} | {_pct(a['module'])} |"
        )
    lines += [
        "",
        "## Latency and size",
        "",
        "| sparsity | mptc module (ms) | onnxruntime fp32 (ms) | speed-up | fp32 ONNX | packed ONNX | ticket |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in points:
        lat, size = p["latency_ms"], p["sizes"]
        lines.append(
            f"| {p['sparsity']:.2f} | {lat['module']['median']:.4f} | {lat['onnxruntime_fp32']['median']:.4f} | "
            f"{p['speedup_vs_onnxruntime_fp32']:.2f}x | {size['fp32_onnx_bytes']:,} B | {size['packed_onnx_bytes']:,} B | {size['ticket_bytes']:,} B |"
        )
    lines += [
        "",
        "The module's latency comes from TVM's time evaluator (no Python call overhead), onnxruntime's "
        "from `InferenceSession.run` called from Python (a few microseconds of call overhead): for "
        "models that run in tens of microseconds, compare with that in mind.",
        "",
        "![latency](latency.png) ![accuracy](accuracy.png) ![size](size.png)",
        "",
    ]
    return "\n".join(lines)
