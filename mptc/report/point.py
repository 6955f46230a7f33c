"""One point of a sweep: train -> export -> optimize -> compile -> profile, with every stage checked.

A point's folder holds the run directory, ``model.onnx`` (fp32 export), ``packed.onnx``,
``compiled/`` and, written last and atomically, ``point.json``; a finished point (its
``point.json`` exists) is reused, an unfinished one continues where it stopped (training resumes
from its checkpoint).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mptc.data import load_dataset
from mptc.errors import VerificationError
from mptc.io import write_json
from mptc.report.latency import onnxruntime_latency
from mptc.report.stages import module_accuracy, onnx_accuracy
from mptc.train.config import TrainConfig
from mptc.train.rundir import RunDir

log = logging.getLogger(__name__)
POINT_FILE = "point.json"
MAX_STAGE_DROP = 0.01  # accuracy lost between two stages beyond this is a failed point


@dataclass(frozen=True)
class DeviceOptions:
    """Where compiled modules run: here (``None`` everywhere), an RPC server, a tracker, or an
    emulated board started here (``emulate``)."""

    target: str = "x86"
    board: str | None = None
    rpc: str | None = None
    tracker: str | None = None
    key: str | None = None
    emulate: str | None = None
    repeat: int = 30

    @property
    def runs_here(self) -> bool:
        return self.target == "x86" and not (self.rpc or self.tracker or self.emulate)


def _train(config: TrainConfig, run: RunDir) -> dict[str, Any]:
    from mptc.train.loop import train

    if run.metrics.is_file() and run.ticket.is_file():
        return json.loads(run.metrics.read_text())
    return train(config, run.root, resume=run.checkpoint.is_file()).metrics


def run_point(config: TrainConfig, folder: str | Path, device: DeviceOptions) -> dict[str, Any]:
    """Run (or reuse) one ticket through every stage and return its record."""
    from mptc.deploy.profile import profile
    from mptc.export import export_model
    from mptc.passes.pipeline import optimize_file
    from mptc.ticket import load_ticket
    from mptc.targets.compile import compile_model

    folder = Path(folder)
    if (folder / POINT_FILE).is_file():
        return json.loads((folder / POINT_FILE).read_text())
    run = RunDir(folder / "run")
    metrics = _train(config, run)
    dataset = load_dataset(config.dataset)
    model, trained_config = load_ticket(run.ticket)
    export = export_model(model, trained_config, dataset, folder / "model.onnx")
    optimize_file(folder / "model.onnx", folder / "packed.onnx")
    manifest = compile_model(folder / "packed.onnx", device.target, folder / "compiled", board=device.board)

    x, labels = dataset.test.x.numpy(), dataset.test.y.numpy()
    accuracy = {
        "pytorch": export.pytorch_accuracy,
        "onnx": export.onnx_accuracy,
        "packed_onnx": onnx_accuracy(folder / "packed.onnx", x, labels),
        "module": None,
    }
    batch = int(manifest["input"]["shape"][0])
    if device.runs_here:
        accuracy["module"] = module_accuracy(folder / "compiled" / "module.so", x, labels, batch)
    _check_stages(accuracy)

    measured = profile(folder / "compiled", rpc=device.rpc, tracker=device.tracker, key=device.key, repeat=device.repeat, emulated_board=device.emulate)
    if not measured.get("outputs_match", False):
        raise VerificationError(f"compiled module's output does not match the reference on the device ({folder / 'compiled'})")
    sample = np.ascontiguousarray(x[:batch])
    baseline = onnxruntime_latency(folder / "model.onnx", sample, device.repeat)
    record = {
        "sparsity": config.sparsity,
        "method": config.method,
        "binary_act": config.binary_act,
        "model": config.model,
        "dataset": dataset.name,
        "accuracy": accuracy,
        "latency_ms": {"module": measured["latency_ms"], "onnxruntime_fp32": baseline},
        "speedup_vs_onnxruntime_fp32": baseline["median"] / measured["latency_ms"]["median"],
        "emulated": bool(measured.get("emulated")),
        "device": measured.get("device"),
        "batch": batch,
        "sizes": {
            "fp32_onnx_bytes": (folder / "model.onnx").stat().st_size,
            "packed_onnx_bytes": (folder / "packed.onnx").stat().st_size,
            "ticket_bytes": metrics["ticket_bytes"],
            "module_bytes": manifest["sizes"]["module_bytes"],
        },
        "kernels": [{k: layer.get(k) for k in ("name", "kernel", "reason") if k in layer} for layer in manifest.get("layers", [])],
        "train_seconds": metrics["train_seconds"],
    }
    write_json(folder / POINT_FILE, record)
    return record


def _check_stages(accuracy: dict[str, float | None]) -> None:
    """Fail when a stage loses accuracy against the one before it (beyond float noise)."""
    stages = [(name, value) for name, value in accuracy.items() if value is not None]
    for (before, a), (after, b) in zip(stages, stages[1:]):
        if a - b > MAX_STAGE_DROP:
            raise VerificationError(f"accuracy drops from {a:.4f} ({before}) to {b:.4f} ({after})")
