"""``sweep``: one ticket per sparsity through every stage, then ``report.json``, ``report.md`` and plots.

Resumable: finished points are reused (see :mod:`mptc.report.point`); the report files are
written only once every point has finished, so a partial report never looks complete.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mptc import __version__
from mptc.config import TrainConfig
from mptc.io import write_json, write_text
from mptc.pipeline import DeviceOptions
from mptc.report.plots import plot_sweep
from mptc.report.point import run_point
from mptc.report.render import render_markdown


def sweep(
    config: TrainConfig,
    sparsities: list[float],
    out_dir: str | Path,
    device: DeviceOptions,
    on_point: Callable[[dict[str, Any]], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run ``config`` at each sparsity and write the report into ``out_dir``.

    ``on_point`` gets each point's record when it is done; ``on_stage`` each stage's name as it
    starts (:data:`mptc.pipeline.STAGES`; a reused point has none).
    """
    out = Path(out_dir)
    points = []
    for sparsity in sparsities:
        point = run_point(
            dataclasses.replace(config, sparsity=sparsity), out / f"sparsity-{sparsity:g}", device, on_stage
        )
        points.append(point)
        if on_point is not None:
            on_point(point)
    report = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "mptc_version": __version__,
        "config": config.to_json(),
        "target": device.target,
        "board": device.board,
        "repeat": device.repeat,
        "emulated": any(p["emulated"] for p in points),
        "points": points,
    }
    title = f"{config.model} {config.method}{' 1/1' if config.binary_act else ''}"
    report["plots"] = [p.name for p in plot_sweep(points, out, title)]
    write_text(out / "report.md", render_markdown(report))
    write_json(out / "report.json", report)
    return report
