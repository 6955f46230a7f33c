"""PNG plots of a sweep: latency, accuracy and size against sparsity."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from mptc.io import atomic_path  # noqa: E402

# The stages of the accuracy plot, each with a marker that stays visible where another overlaps it.
ACCURACY_STAGES = (
    ("pytorch", dict(marker="o", markersize=9, fillstyle="none", linestyle="-")),
    ("onnx", dict(marker="s", markersize=7, fillstyle="none", linestyle="--")),
    ("packed_onnx", dict(marker="^", markersize=7, linestyle=":")),
    ("module", dict(marker="x", markersize=8, markeredgewidth=2, linestyle="-.")),
)
# Horizontal step between neighbouring stages: a share of the sparsity range, but at most a share
# of the smallest gap between two points, so the stages of one point never reach the next.
STAGE_OFFSET = 0.025
STAGE_GAP_SHARE = 0.2


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
    # Stages that agree have equal accuracies, so their lines would coincide and hide each other:
    # each stage is drawn a little to the side of the true sparsity, with its own marker.
    gaps = [b - a for a, b in zip(sorted(sparsity), sorted(sparsity)[1:]) if b > a]
    step = min([STAGE_OFFSET * ((max(sparsity) - min(sparsity)) or 1.0), *(STAGE_GAP_SHARE * g for g in gaps)])
    for i, (stage, style) in enumerate(ACCURACY_STAGES):
        shown = [(s, p["accuracy"].get(stage)) for s, p in zip(sparsity, points)]
        shown = [(s, v) for s, v in shown if v is not None]
        if shown:
            offset = step * (i - (len(ACCURACY_STAGES) - 1) / 2)
            axis.plot(
                [s + offset for s, _ in shown],
                [100 * v for _, v in shown],
                label=stage.replace("_", " "),
                **style,
            )
    axis.set(
        xlabel="sparsity (fraction pruned; stages drawn side by side)",
        ylabel="test accuracy (%)",
        title=f"{title}: accuracy at every stage",
    )
    axis.legend()
    axis.grid(alpha=0.3)
    paths.append(folder / "accuracy.png")
    _save(figure, paths[-1])

    figure, axis = plt.subplots(figsize=(6, 4))
    for key, marker, label in (
        ("fp32_onnx_bytes", "s--", "fp32 ONNX"),
        ("packed_onnx_bytes", "o-", "packed ONNX"),
        ("module_bytes", "D-.", "compiled module"),
        ("ticket_bytes", "^:", "ticket (seed + mask bits)"),
    ):
        if all(p["sizes"].get(key) is not None for p in points):
            axis.plot(sparsity, [p["sizes"][key] / 1024 for p in points], marker, label=label)
    axis.set(xlabel="sparsity (fraction pruned)", ylabel="size (KiB)", title=f"{title}: model size", yscale="log")
    axis.legend()
    axis.grid(alpha=0.3, which="both")
    paths.append(folder / "size.png")
    _save(figure, paths[-1])
    return paths
