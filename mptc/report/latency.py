"""The peers a compiled module is timed against, in the same process and on the same input.

onnxruntime fp32 runs the exported (unpacked) model: what a user gets without mptc. Medians of
interleaved-free repeated runs; the machine is shared and noisy, so reports quote ratios.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import onnx

from mptc.export.onnx_export import ort_session

WARMUP = 5


def time_call(call, repeat: int) -> dict[str, float]:
    """Median/min/max milliseconds of ``call()`` over ``repeat`` runs after a warm-up."""
    for _ in range(WARMUP):
        call()
    samples = []
    for _ in range(repeat):
        began = time.perf_counter()
        call()
        samples.append((time.perf_counter() - began) * 1e3)
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples)}


def onnxruntime_latency(path: str | Path, x: np.ndarray, repeat: int) -> dict[str, float]:
    """Latency of an ONNX file in onnxruntime (CPU, fp32, default threads) on input ``x``."""
    session = ort_session(onnx.load(str(path)))
    name = session.get_inputs()[0].name
    return time_call(lambda: session.run(None, {name: x}), repeat)
