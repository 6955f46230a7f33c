"""The peers a compiled module is timed against, in the same process and on the same input.

onnxruntime fp32 runs the exported (unpacked) model: what a user gets without mptc; its static
INT8 quantization is the peer of a module with int8 activations. The machine is
shared and noisy, so reports quote ratios: every side is timed once per round, round after round
(:func:`interleaved_rounds`), and a ratio is the median over rounds of each round's ratio
(:func:`median_ratio`), so a slow phase of the host that spans a round slows both sides of its
ratio alike.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx

WARMUP = 5
SETTLE_S = 0.05  # pause before each side of a round: the previous side's pool threads go idle (see interleaved_rounds)


def time_call(call: Callable[[], object], repeat: int) -> dict[str, float]:
    """Median/min/max milliseconds of ``call()`` over ``repeat`` runs after a warm-up."""
    for _ in range(WARMUP):
        call()
    samples = []
    for _ in range(repeat):
        began = time.perf_counter()
        call()
        samples.append((time.perf_counter() - began) * 1e3)
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples)}


def interleaved_rounds(
    timers: Mapping[str, Callable[[], float]], rounds: int, on_round: Callable[[int], None] | None = None
) -> dict[str, list[float]]:
    """Each timer's result (one round's latency) for ``rounds`` rounds, every timer once per round.

    Each side starts ``SETTLE_S`` after the previous one ends: onnxruntime's intra-op threads keep
    spinning after its runs and took one of two cores from the side timed next (a module's 2-thread
    conv ran 1.5-2x slower right after onnxruntime, as fast as alone after the pause; measured:
    docs/performance.md). ``on_round`` is told how many rounds are done, 0 before the first.
    """
    samples: dict[str, list[float]] = {name: [] for name in timers}
    for done in range(rounds):
        if on_round is not None:
            on_round(done)
        for name, timer in timers.items():
            time.sleep(SETTLE_S)
            samples[name].append(timer())
    if on_round is not None:
        on_round(rounds)
    return samples


def median_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    """``median_r(numerators[r] / denominators[r])``: the ratio of two sides timed in the same rounds."""
    return statistics.median(n / d for n, d in zip(numerators, denominators))


def onnxruntime_latency(
    path: str | Path, x: np.ndarray, repeat: int, int8_calibration: np.ndarray | None = None
) -> dict[str, float]:
    """Latency of an ONNX file in onnxruntime (CPU, default threads) on input ``x``: fp32, or its
    static INT8 quantization calibrated on ``int8_calibration`` (batches of ``x``'s shape)."""
    from mptc.export.onnx_export import ort_session  # the exporter imports torch; the timing helpers above need neither

    model = onnx.load(str(path))
    name = next(i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer})
    if int8_calibration is not None:
        from mptc.deploy.compare import quantize_int8

        batches = [int8_calibration[i : i + len(x)] for i in range(0, len(int8_calibration) - len(x) + 1, len(x))]
        model = quantize_int8(model, name, batches)
    session = ort_session(model)
    return time_call(lambda: session.run(None, {name: x}), repeat)
