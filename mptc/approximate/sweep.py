"""``mptc approximate``: approximation error of a ticket in a random +-1 network as width grows.

For each width factor, build a ticket approximating the target run (by the ``distill`` or the
``construct`` route) and measure on the data set's test split, with ``f`` the target's and
``g`` the ticket's logits: the mean and max over samples of ``||g(x) - f(x)||_2``, the mean
relative to ``mean ||f(x)||_2``, and the argmax agreement ``P[argmax g = argmax f]``. Writes
``approximation.json``, ``approximation.md`` and ``approximation.png`` (error and agreement
against width).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mptc.approximate.construct import construct
from mptc.approximate.distill import DistillConfig, distill
from mptc.approximate.target import AffineMLP, load_target
from mptc.config import ROUTES
from mptc.data import Dataset, load_dataset
from mptc.io import atomic_path, write_json, write_text
from mptc.nn.layers import masked_layers

log = logging.getLogger(__name__)

COPIES_PER_FACTOR = 3
CANDIDATES = 8


@dataclass(frozen=True)
class ApproximateConfig:
    """One sweep. ``construct``: width factor ``F`` gives ``R = 3 F`` copies per lane at
    ``precision`` bits (depth ``1 + l P``); ``distill``: a student ``F`` x wider and
    ``depth_factor`` x deeper, trained ``epochs`` epochs (with ``random_inputs`` Gaussian inputs
    per training input)."""

    route: str = "distill"
    width_factors: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
    depth_factor: int = 1
    precision: int = 8
    epochs: int = 20
    random_inputs: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        checks = [
            (self.route in ROUTES, f"unknown route {self.route!r}; expected one of {', '.join(ROUTES)}"),
            (
                bool(self.width_factors) and min(self.width_factors) > 0,
                f"--width-factor values must be positive, got {self.width_factors}",
            ),
            (
                self.route != "construct"
                or all(
                    f * COPIES_PER_FACTOR >= 2 and float(f * COPIES_PER_FACTOR).is_integer() for f in self.width_factors
                ),
                f"construct route: --width-factor F gives {COPIES_PER_FACTOR} F copies per lane, which must be a whole number >= 2",
            ),
            (self.depth_factor >= 1, f"--depth-factor must be at least 1, got {self.depth_factor}"),
            (1 <= self.precision <= 16, f"--precision must be 1 to 16 bits, got {self.precision}"),
            (self.epochs >= 1, f"--epochs must be at least 1, got {self.epochs}"),
            (self.random_inputs >= 0, f"--random-inputs must be non-negative, got {self.random_inputs}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


def output_distance(outputs: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Mean/max L2 distance per sample, mean relative distance and argmax agreement."""
    distance = np.linalg.norm(outputs - reference, axis=1)
    return {
        "mean_distance": float(distance.mean()),
        "max_distance": float(distance.max()),
        "relative_distance": float(distance.mean() / np.linalg.norm(reference, axis=1).mean()),
        "argmax_agreement": float((outputs.argmax(1) == reference.argmax(1)).mean()),
    }


def _row(
    config: ApproximateConfig,
    factor: float,
    target_model: nn.Module,
    target: AffineMLP,
    dataset: Dataset,
    x: np.ndarray,
    reference: np.ndarray,
) -> dict[str, Any]:
    began = time.perf_counter()
    if config.route == "construct":
        ticket = construct(target, config.precision, int(factor * COPIES_PER_FACTOR), CANDIDATES, config.seed)
        outputs = ticket(x)
        shape = {
            "copies": ticket.copies,
            "precision": config.precision,
            "depth": ticket.depth,
            "max_width": max(ticket.widths),
            "entries": ticket.entries,
            "kept": ticket.kept,
            "inexact_neurons": ticket.inexact_neurons,
        }
    else:
        student = distill(
            target_model,
            dataset,
            target.widths,
            DistillConfig(
                factor=factor,
                depth=config.depth_factor,
                epochs=config.epochs,
                random_inputs=config.random_inputs,
                seed=config.seed,
            ),
        )
        with torch.no_grad():
            outputs = student(dataset.test.x).double().numpy()
        layers = [layer for _, layer in masked_layers(student)]
        shape = {
            "depth": len(layers),
            "max_width": max(student.widths[1:-1]),
            "entries": sum(m.weight.numel() for m in layers),
            "kept": sum(m.kept for m in layers),
        }
    labels = dataset.test.y.numpy()
    return {
        "route": config.route,
        "width_factor": factor,
        **shape,
        **output_distance(outputs, reference),
        "test_accuracy": float((outputs.argmax(1) == labels).mean()),
        "seconds": time.perf_counter() - began,
    }


def describe(config: ApproximateConfig) -> str:
    """One line saying how each width factor's ticket was found."""
    if config.route == "construct":
        return f"construct route: integer form at P = {config.precision} bits, {COPIES_PER_FACTOR} x width factor copies per lane, {CANDIDATES} candidate rows per neuron, seed {config.seed}."
    return (
        f"distill route: signed-constant student (width factor x wider, {config.depth_factor} x deeper), edge-popup masks, "
        f"{config.epochs} epochs, {config.random_inputs:g} Gaussian inputs per training input, seed {config.seed}."
    )


def markdown_table(rows: list[dict[str, Any]], target_accuracy: float, config: ApproximateConfig) -> str:
    """The sweep as a Markdown table (one row per width factor)."""
    lines = [
        describe(config),
        f"Target test accuracy {target_accuracy:.4f}. Distances are L2 over the logits, per test sample.",
        "",
        "| route | width factor | depth | max width | +-1 entries | kept | mean dist | max dist | rel. mean | argmax agreement | ticket acc | s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['route']} | {r['width_factor']:g} | {r['depth']} | {r['max_width']} | {r['entries']:,} | {r['kept']:,} | "
            f"{r['mean_distance']:.4f} | {r['max_distance']:.4f} | {r['relative_distance']:.4f} | {r['argmax_agreement']:.4f} | "
            f"{r['test_accuracy']:.4f} | {r['seconds']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """Error (mean and max distance, log scale) and argmax agreement against the width factor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    factors = [r["width_factor"] for r in rows]
    figure, (error_axis, agreement_axis) = plt.subplots(1, 2, figsize=(10, 4))
    error_axis.plot(factors, [r["mean_distance"] for r in rows], "o-", label="mean ||g(x) - f(x)||")
    error_axis.plot(factors, [r["max_distance"] for r in rows], "s--", label="max ||g(x) - f(x)||")
    error_axis.set(
        xscale="log",
        yscale="log",
        xlabel="width factor",
        ylabel="output distance (test split)",
        title="approximation error",
    )
    error_axis.legend()
    agreement_axis.plot(factors, [100 * r["argmax_agreement"] for r in rows], "o-", color="tab:green")
    agreement_axis.set(
        xscale="log", xlabel="width factor", ylabel="argmax agreement with target (%)", title="agreement"
    )
    for axis in (error_axis, agreement_axis):
        axis.xaxis.set_minor_locator(NullLocator())
        axis.set_xticks(factors, [f"{f:g}" for f in factors])
        axis.grid(True, which="both", alpha=0.3)
    figure.suptitle(title)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)


def approximate(target_run: str | Path, config: ApproximateConfig, out_dir: str | Path) -> dict[str, Any]:
    """Run the sweep of ``config`` against ``target_run`` and write its report into ``out_dir``."""
    target_model, target, target_config = load_target(target_run)
    dataset = load_dataset(target_config.dataset)
    x = dataset.test.x.reshape(len(dataset.test), -1).double().numpy()
    with torch.no_grad():
        reference = target_model(dataset.test.x).double().numpy()
    rows = []
    for factor in config.width_factors:
        rows.append(_row(config, factor, target_model, target, dataset, x, reference))
        log.info("width factor %g: %s", factor, rows[-1])
    target_accuracy = float((reference.argmax(1) == dataset.test.y.numpy()).mean())
    report = {
        "target": str(target_run),
        "target_widths": target.widths,
        "target_test_accuracy": target_accuracy,
        "config": asdict(config),
        "rows": rows,
    }
    out = Path(out_dir)
    write_json(out / "approximation.json", report)
    write_text(out / "approximation.md", markdown_table(rows, target_accuracy, config))
    plot(
        rows,
        out / "approximation.png",
        f"{config.route} route: ticket in a random +-1 network vs target mlp {target.widths}",
    )
    return report
