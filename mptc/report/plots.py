"""PNG plots of a sweep: latency, accuracy and size against sparsity."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from mptc.io import atomic_path  # noqa: E402


def _save(figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)


def plot_sweep(points: list[dict[str, Any]], folder: Path, title: str) -> list[Path]:
    """Write ``latency.png``, ``accuracy.png`` and ``size.png``; returns their paths."""
    sparsity = [p["sparsity"] for p in points]
    emulated = " (emulated board)" if any(p["emulated"] for p in points) else ""
    paths = []

    figure, axis = plt.subplots(figsize=(6, 4))
    axis.plot(sparsity, [p["latency_ms"]["module"]["median"] for p in points], "o-", label=f"mptc module{emulated}")
    axis.plot(
        sparsity,
        [p["latency_ms"]["onnxruntime_fp32"]["median"] for p in points],
        "s--",
        color="gray",
        label="onnxruntime fp32 (same model, unpacked)",
    )
    axis.set(
        xlabel="sparsity (fraction pruned)",
        ylabel="latency, median (ms)",
        title=f"{title}: latency, batch {points[0]['batch']}",
    )
    axis.set_ylim(bottom=0)
    axis.legend()
    axis.grid(alpha=0.3)
    paths.append(folder / "latency.png")
    _save(figure, paths[-1])

    figure, axis = plt.subplots(figsize=(6, 4))
    for stage, marker in (("pytorch", "o-"), ("onnx", "s--"), ("packed_onnx", "^:"), ("module", "x-.")):
        values = [p["accuracy"].get(stage) for p in points]
        if all(v is not None for v in values):
            axis.plot(sparsity, [100 * v for v in values], marker, label=stage.replace("_", " "))
    axis.set(xlabel="sparsity (fraction pruned)", ylabel="test accuracy (%)", title=f"{title}: accuracy at every stage")
    axis.legend()
    axis.grid(alpha=0.3)
    paths.append(folder / "accuracy.png")
    _save(figure, paths[-1])

    figure, axis = plt.subplots(figsize=(6, 4))
    for key, marker, label in (
        ("fp32_onnx_bytes", "s--", "fp32 ONNX"),
        ("packed_onnx_bytes", "o-", "packed ONNX"),
        ("ticket_bytes", "^:", "ticket (seed + mask bits)"),
    ):
        axis.plot(sparsity, [p["sizes"][key] / 1024 for p in points], marker, label=label)
    axis.set(xlabel="sparsity (fraction pruned)", ylabel="size (KiB)", title=f"{title}: model size", yscale="log")
    axis.legend()
    axis.grid(alpha=0.3, which="both")
    paths.append(folder / "size.png")
    _save(figure, paths[-1])
    return paths
