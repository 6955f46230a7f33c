"""One point of a sweep: the record of one ticket taken through :func:`mptc.pipeline.run_pipeline`.

A point's folder is a pipeline folder plus, written last and atomically, ``point.json``; a
finished point (its ``point.json`` exists) is reused, an unfinished one continues where it
stopped (training resumes from its checkpoint).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mptc.config import TrainConfig
from mptc.io import write_json
from mptc.pipeline import DeviceOptions, run_pipeline
from mptc.report.latency import onnxruntime_latency

POINT_FILE = "point.json"


def run_point(config: TrainConfig, folder: str | Path, device: DeviceOptions) -> dict[str, Any]:
    """Run (or reuse) one ticket through every stage and return its record."""
    folder = Path(folder)
    if (folder / POINT_FILE).is_file():
        return json.loads((folder / POINT_FILE).read_text())
    result = run_pipeline(config, folder, device)
    measured, manifest = result.profile, result.manifest
    sample = np.ascontiguousarray(result.dataset.test.x.numpy()[: result.batch])
    baseline = onnxruntime_latency(result.folder.fp32_model, sample, device.repeat)
    record = {
        "sparsity": config.sparsity,
        "method": config.method,
        "binary_act": config.binary_act,
        "model": config.model,
        "dataset": result.dataset.name,
        "accuracy": result.accuracy,
        "latency_ms": {"module": measured["latency_ms"], "onnxruntime_fp32": baseline},
        "speedup_vs_onnxruntime_fp32": baseline["median"] / measured["latency_ms"]["median"],
        "emulated": bool(measured.get("emulated")),
        "device": measured.get("device"),
        "batch": result.batch,
        "sizes": {
            "fp32_onnx_bytes": result.folder.fp32_model.stat().st_size,
            "packed_onnx_bytes": result.folder.packed_model.stat().st_size,
            "ticket_bytes": result.metrics["ticket_bytes"],
            "module_bytes": manifest.sizes.module_bytes,
        },
        "kernels": [{k: layer.get(k) for k in ("name", "kernel", "reason") if k in layer} for layer in manifest.layers],
        "train_seconds": result.metrics["train_seconds"],
    }
    write_json(folder / POINT_FILE, record)
    return record
