"""One point of a sweep: the record of one ticket taken through :func:`mptc.pipeline.run_pipeline`.

A point's folder is a pipeline folder plus, written last and atomically, ``point.json``; a
finished point is reused, an unfinished one continues where it stopped (training resumes from
its checkpoint). Only for the same inputs: ``point.json`` records them (``inputs``: the resolved
training configuration and the device options, :func:`point_inputs`), and a point asked for with
other ones is computed again, its training too when ``run/config.json`` differs (the run of
other settings is deleted: the folder is the sweep's own).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mptc.config import TrainConfig
from mptc.errors import InputError
from mptc.io import read_regular_file, write_json
from mptc.pipeline import DeviceOptions, PipelineFolder, calibration_samples, run_pipeline
from mptc.report.latency import onnxruntime_latency

POINT_FILE = "point.json"
MAX_RECORD_BYTES = 16 << 20  # a point.json or config.json larger than this is not one of ours
FILLED_BY_TRAINING = ("pretrained_sha256",)
"""Fields training fills in when the request leaves them unset: not a difference of settings."""


def run_point(
    config: TrainConfig, folder: str | Path, device: DeviceOptions, on_stage: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Run (or reuse) one ticket through every stage and return its record (``on_stage``: see
    :func:`mptc.pipeline.run_pipeline`)."""
    folder = Path(folder)
    inputs = point_inputs(config, device)
    finished = _read_json(folder / POINT_FILE)
    if finished is not None and finished.get("inputs") == inputs:
        return finished
    (folder / POINT_FILE).unlink(missing_ok=True)  # of other settings, or unreadable: never reused
    run = PipelineFolder(folder).run
    if run.root.is_dir() and not _same_training(inputs["config"], _read_json(run.config)):
        shutil.rmtree(run.root)
    result = run_pipeline(config, folder, device, on_stage)
    measured, manifest = result.profile, result.manifest
    sample = np.ascontiguousarray(result.dataset.test.x.numpy()[: result.batch])
    baseline = onnxruntime_latency(result.folder.fp32_model, sample, device.repeat)
    latency = {"module": measured["latency_ms"], "onnxruntime_fp32": baseline}
    speedups = {"speedup_vs_onnxruntime_fp32": baseline["median"] / measured["latency_ms"]["median"]}
    if device.activations == "int8":
        calibration = calibration_samples(result.dataset)
        latency["onnxruntime_int8"] = onnxruntime_latency(result.folder.fp32_model, sample, device.repeat, calibration)
        speedups["speedup_vs_onnxruntime_int8"] = (
            latency["onnxruntime_int8"]["median"] / measured["latency_ms"]["median"]
        )
    record = {
        "sparsity": config.sparsity,
        "method": config.method,
        "binary_act": config.binary_act,
        "model": config.model,
        "dataset": result.dataset.name,
        "accuracy": result.accuracy,
        "activations": device.activations,
        "latency_ms": latency,
        **speedups,
        "emulated": bool(measured.get("emulated")),
        "device": measured.get("device"),
        "batch": result.batch,
        "sizes": {
            "fp32_onnx_bytes": result.folder.fp32_model.stat().st_size,
            "packed_onnx_bytes": result.folder.packed_model.stat().st_size,
            "ticket_bytes": result.metrics["ticket_bytes"],
            "module_bytes": manifest.sizes.module_bytes,
        },
        "kernels": [
            {k: layer.get(k) for k in ("name", "op_type", "sparsity", "kernel", "reason") if k in layer}
            for layer in manifest.layers
        ],
        "train_seconds": result.metrics["train_seconds"],
        "inputs": inputs,
    }
    write_json(folder / POINT_FILE, record)
    return record


def point_inputs(config: TrainConfig, device: DeviceOptions) -> dict[str, Any]:
    """What a point's result depends on, as JSON reads it back: the training configuration with
    the recipe's defaults filled in, and where the module is built and run."""
    from mptc.train.config import resolve

    return json.loads(json.dumps({"config": resolve(config).to_json(), "device": dataclasses.asdict(device)}))


def _same_training(requested: dict[str, Any], stored: dict[str, Any] | None) -> bool:
    """Whether a run's ``config.json`` is the training ``requested`` (both resolved)."""
    if stored is None:
        return False
    keys = set(requested) | set(stored)
    return all(
        stored.get(key) == requested.get(key)
        for key in keys
        if not (key in FILLED_BY_TRAINING and requested.get(key) is None)
    )


def _read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``, or None when it is missing or is not one (a point to compute again)."""
    if not path.exists():
        return None
    try:
        data = json.loads(read_regular_file(path, MAX_RECORD_BYTES, "record"))
    except (InputError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None
