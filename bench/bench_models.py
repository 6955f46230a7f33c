"""Model-level benchmark: whole CIFAR-shape tickets compiled by mptc vs their peers, batch 1.

For each (model, variant, sparsity) a random-weight ticket (latency does not depend on what the
mask learned, only on its sparsity) goes through the real pipeline: export -> optimize -> compile
for this host. Side by side in one process, on the same input, in interleaved rounds (median round of medians;
the speedup is the median over rounds of each round's ratio, so a slow phase of the shared host
that spans a round slows both sides of its ratio):

* mptc: the packed model compiled by ``mptc.targets`` (bit-packed / sparse kernels; variant
  ``MPT-1/32+int8``: ``--activations int8``, calibrated on the same 32 inputs as onnxruntime's INT8);
* onnxruntime fp32 on the exported (unpacked) model: what a user gets without mptc;
* onnxruntime static INT8 (QDQ, per-channel, calibrated on 32 inputs) of that model;
* TVM fp32: the unpacked model compiled by ``mptc.targets`` with its fp32 schedules;
* torch fp32 eager on the frozen model.

    .venv/bin/python bench/bench_models.py [--models vgg-small,resnet18] [--repeat 20] [--rounds 11]
"""

from __future__ import annotations

import os

# torch's OpenMP threads busy-wait for a while after each call; interleaved with the other peers
# that spinning would be timed as their latency. Set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import gc  # noqa: E402
import logging  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import torch  # noqa: E402

import mptc  # noqa: E402,F401  (sets TVM_NUM_THREADS before tvm loads)
from mptc.artifact import MODULE_FILE  # noqa: E402
from mptc.config import TrainConfig  # noqa: E402
from mptc.data import Dataset, load_dataset  # noqa: E402
from mptc.errors import VerificationError  # noqa: E402
from mptc.export import export_model  # noqa: E402
from mptc.export.freeze import freeze  # noqa: E402
from mptc.export.onnx_export import ort_session  # noqa: E402
from mptc.passes.pipeline import optimize_file  # noqa: E402
from mptc.report.latency import time_call  # noqa: E402
from mptc.targets.compile import compile_model  # noqa: E402
from mptc.train.loop import build  # noqa: E402

VARIANTS = {
    "MPT-1/1": dict(method="biprop", binary_act=True),
    "MPT-1/32": dict(method="biprop"),
    "MPT-1/32+int8": dict(method="biprop"),  # compiled with --activations int8
}
INT8_ACTIVATIONS = {"MPT-1/32+int8"}
DATASET = "synthetic:3x32x32"


def random_ticket(config: TrainConfig, dataset: Dataset) -> torch.nn.Module:
    """An untrained ticket of ``config`` with the BatchNorm statistics of ``dataset``'s training
    inputs, as after training: latency does not depend on what the mask learned."""
    model = build(config, dataset)
    with torch.no_grad():
        model.train()
        for x_batch, _ in dataset.train.batches(64):
            model(x_batch)
    return model.eval()


def quantize_int8(src: Path, dst: Path, samples: np.ndarray) -> Path:
    """onnxruntime static INT8 (QDQ, per-channel weights) calibrated on ``samples``."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    logging.getLogger().setLevel(logging.ERROR)  # the quantizer's advice on pre-processing, per model

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"input": samples[i : i + 1]} for i in range(len(samples))])

        def get_next(self):
            return next(self.items, None)

    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True)
    return dst


def eager_call(model: torch.nn.Module, x: torch.Tensor):
    def call():
        with torch.no_grad():
            model(x)

    return call


def module_call(out_dir: Path, x: np.ndarray):
    import tvm

    vm = tvm.runtime.vm.VirtualMachine(tvm.runtime.load_module(str(out_dir / MODULE_FILE)), tvm.cpu())
    data = tvm.runtime.tensor(x, tvm.cpu())
    return lambda: vm["main"](data)


def onnxruntime_call(path: Path, x: np.ndarray):
    session = ort_session(onnx.load(str(path)))
    name = session.get_inputs()[0].name
    return lambda: session.run(None, {name: x})


def bench(
    model_name: str, variant: str, sparsity: float, repeat: int, rounds: int, work: Path
) -> tuple[dict[str, float], tuple[float, float]]:
    """Median over ``rounds`` interleaved rounds (every peer once per round) of each peer's median
    of ``repeat`` calls, and the median per-round speedup of mptc over onnxruntime fp32: a burst
    of load from other jobs hits one round of every peer alike; and over onnxruntime INT8."""
    config = TrainConfig(model=model_name, dataset=DATASET, sparsity=sparsity, seed=0, **VARIANTS[variant])
    dataset = load_dataset(DATASET)
    model = random_ticket(config, dataset)
    stem = work / f"{model_name}-{variant.replace('/', '_')}-s{int(round(sparsity * 100))}"
    export_model(model, config, dataset, stem.with_suffix(".onnx"))
    optimize_file(stem.with_suffix(".onnx"), stem.with_suffix(".packed.onnx"))
    samples = dataset.train.x[:32].numpy()
    calibration = samples if variant in INT8_ACTIVATIONS else None
    compile_model(stem.with_suffix(".packed.onnx"), "x86", stem.with_name(stem.name + "-mptc"), calibration=calibration)
    compile_model(stem.with_suffix(".onnx"), "x86", stem.with_name(stem.name + "-tvmfp32"))
    x = dataset.test.x[:1].numpy()
    int8 = quantize_int8(stem.with_suffix(".onnx"), stem.with_suffix(".int8.onnx"), samples)
    torch_call = eager_call(freeze(model), torch.from_numpy(x))
    calls = {
        "mptc": module_call(stem.with_name(stem.name + "-mptc"), x),
        "onnxruntime fp32": onnxruntime_call(stem.with_suffix(".onnx"), x),
        "onnxruntime int8": onnxruntime_call(int8, x),
        "tvm fp32": module_call(stem.with_name(stem.name + "-tvmfp32"), x),
        "torch fp32": torch_call,
    }
    medians: dict[str, list[float]] = {peer: [] for peer in calls}
    for _ in range(rounds):
        for peer, call in calls.items():
            medians[peer].append(time_call(call, repeat)["median"])
    del calls, torch_call  # free this model's sessions and thread pools before the next one is timed
    gc.collect()
    speedups = tuple(
        statistics.median(o / m for o, m in zip(medians[peer], medians["mptc"]))
        for peer in ("onnxruntime fp32", "onnxruntime int8")
    )
    return {peer: statistics.median(values) for peer, values in medians.items()}, speedups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="vgg-small,resnet18")
    parser.add_argument("--variants", default="MPT-1/1,MPT-1/32")
    parser.add_argument("--sparsities", default="0.5,0.9")
    parser.add_argument("--repeat", type=int, default=20, help="Calls per peer per round.")
    parser.add_argument(
        "--rounds",
        type=int,
        default=11,
        help="Interleaved rounds; the table shows the median round and the median per-round speedup.",
    )
    args = parser.parse_args()
    peers = ["mptc", "onnxruntime fp32", "onnxruntime int8", "tvm fp32", "torch fp32"]
    print(
        f"| model | variant | sparsity | {' | '.join(p + ' (ms)' for p in peers)} | mptc vs onnxruntime fp32 | vs int8 |"
    )
    print(f"|---|---|---|{'---|' * len(peers)}---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for model_name in args.models.split(","):
            for variant in args.variants.split(","):
                for sparsity in (float(s) for s in args.sparsities.split(",")):
                    try:
                        times, (versus_fp32, versus_int8) = bench(
                            model_name, variant, sparsity, args.repeat, args.rounds, Path(tmp)
                        )
                    except VerificationError as error:  # a random ticket whose stages disagree is not timed
                        print(
                            f"| {model_name} | {variant} | {sparsity:.2f} | not timed: {error} |{' |' * (len(peers) + 1)}",
                            flush=True,
                        )
                        continue
                    cells = " | ".join(f"{times[p]:.2f}" for p in peers)
                    print(
                        f"| {model_name} | {variant} | {sparsity:.2f} | {cells} | {versus_fp32:.2f}x | {versus_int8:.2f}x |",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
