"""Latency of an ONNX model on a peer runtime that lives in its own environment (OpenVINO, DeepSparse).

The peers are kept out of mptc's dependencies, so this script imports nothing of mptc: run it with
the peer's own interpreter, on the model mptc compiled (``OUT/source.onnx``, or a float ONNX file),
and alternate it with ``mptc profile OUT --compare onnxruntime,onnxruntime-int8`` at the same
thread count; compare medians, and say which host ran both.

    /path/to/peer-venv/bin/python bench/bench_peer_runtimes.py MODEL.onnx --engine openvino|deepsparse \\
        [--threads 1] [--rounds 5] [--repeat 50]

OpenVINO: ``openvino`` from PyPI, CPU device, ``PERFORMANCE_HINT=LATENCY``,
``INFERENCE_NUM_THREADS``. DeepSparse: ``deepsparse`` 1.8.0 from PyPI (1.9.0 there is an
end-of-life stub that refuses to build), ``compile_model(model, batch_size, num_cores=threads)``.
Each round times ``repeat`` calls on one random input after a warm-up; the median round is printed.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx


def input_of(path: str) -> tuple[str, np.ndarray]:
    """The model's first input's name and a random float32 array of its static shape."""
    model = onnx.load(path)
    first = model.graph.input[0]
    shape = [d.dim_value or 1 for d in first.type.tensor_type.shape.dim]
    return first.name, np.random.default_rng(0).standard_normal(shape).astype(np.float32)


def openvino_call(path: str, name: str, x: np.ndarray, threads: int) -> Callable[[], object]:
    import openvino as ov

    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
    request = ov.Core().compile_model(path, "CPU", config).create_infer_request()
    return lambda: request.infer({name: x})


DEEPSPARSE_MAX_IR_VERSION = 9  # its bundled onnxruntime reads IR 9 at most


def deepsparse_call(path: str, name: str, x: np.ndarray, threads: int) -> Callable[[], object]:
    from deepsparse import compile_model

    model = onnx.load(path)
    model.ir_version = min(model.ir_version, DEEPSPARSE_MAX_IR_VERSION)
    with tempfile.TemporaryDirectory(prefix="deepsparse-") as tmp:
        capped = str(Path(tmp) / "model.onnx")
        onnx.save(model, capped)
        engine = compile_model(capped, batch_size=x.shape[0], num_cores=threads)
    return lambda: engine.run([x])


ENGINES = {"openvino": openvino_call, "deepsparse": deepsparse_call}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="an ONNX file (float model)")
    parser.add_argument("--engine", choices=sorted(ENGINES), required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    name, x = input_of(args.model)
    call = ENGINES[args.engine](args.model, name, x, args.threads)
    for _ in range(10):
        call()
    rounds = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        for _ in range(args.repeat):
            call()
        rounds.append((time.perf_counter() - start) / args.repeat * 1e3)
    print(
        f"{args.engine} {args.model}: median {statistics.median(rounds):.4f} ms per call "
        f"({args.rounds} rounds of {args.repeat}, {args.threads} thread(s)); rounds {', '.join(f'{r:.4f}' for r in rounds)}"
    )


if __name__ == "__main__":
    main()
