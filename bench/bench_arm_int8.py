"""int8 activations on an emulated dotprod board: CIFAR MPT-1/32 tickets in guest instructions per inference.

For each (model, sparsity) a random-weight ticket goes through the real pipeline (export ->
optimize) and is compiled for ``--board`` (default rpi5: cortex-a76, Armv8.2 dotprod) twice:
``--activations int8`` calibrated on 32 training inputs, and fp32. Counted under qemu at one
thread, as ``bench_arm.py`` counts (``mptc.deploy.instructions``), beside onnxruntime 1.19.2's
aarch64 build on the fp32 network and on its static INT8 (QDQ, per-channel weights, calibrated
on the same 32 inputs by this host's onnxruntime). Every output is checked against its
reference before it counts; the INT8 peer's reference is this host's onnxruntime run of the same
INT8 model, held to 5 % of the output's scale (1.19.2 requantizes with other rounding than 1.32,
and a level one step apart propagates through every later layer).

    .venv/bin/python bench/bench_arm_int8.py [--models resnet18,vgg-small] [--sparsities 0.1,0.5,0.9] [--board rpi5]
    .venv/bin/python bench/bench_arm_int8.py --models mlp --dataset digits
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import numpy as np
import onnx
from bench_models import DATASET, random_ticket

import mptc
from mptc.artifact import SOURCE_MODEL_FILE, read_reference, write_reference
from mptc.config import TrainConfig
from mptc.data import load_dataset
from mptc.deploy import instructions
from mptc.deploy.compare import quantize_int8
from mptc.deploy.emulator import get_board
from mptc.export import export_model
from mptc.passes.pipeline import optimize_file

CALIBRATION_SAMPLES = 32
INT8_PEER_TOLERANCE = 0.05


def ticket(model_name: str, dataset_name: str, sparsity: float, work: Path) -> tuple[Path, Path, np.ndarray]:
    """The exported and the packed ONNX of a random MPT-1/32 ticket, and its calibration inputs."""
    config = TrainConfig(model=model_name, dataset=dataset_name, sparsity=sparsity, seed=0, method="biprop")
    dataset = load_dataset(dataset_name)
    model = random_ticket(config, dataset)
    exported, packed = work / "model.onnx", work / "packed.onnx"
    export_model(model, config, dataset, exported)
    optimize_file(exported, packed)
    return exported, packed, dataset.train.x[:CALIBRATION_SAMPLES].numpy()


def int8_peer(exported: Path, calibration: np.ndarray, beside: Path, folder: Path) -> Path:
    """An OUT/-shaped folder whose ``source.onnx`` is onnxruntime's static INT8 of ``exported`` and
    whose reference is this host's onnxruntime run of it on ``beside``'s reference input."""
    import onnxruntime as ort

    network = onnx.load(exported)
    name = network.graph.input[0].name
    int8 = quantize_int8(network, name, [calibration[i : i + 1] for i in range(len(calibration))])
    int8.ir_version = min(int8.ir_version, instructions.PEER_MAX_IR_VERSION)
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(int8, folder / SOURCE_MODEL_FILE)
    x, _ = read_reference(beside)
    write_reference(folder, x, ort.InferenceSession(int8.SerializeToString()).run(None, {name: x})[0])
    return folder


def bench(model_name: str, dataset: str, sparsity: float, board: str, work: Path) -> dict[str, float]:
    exported, packed, calibration = ticket(model_name, dataset, sparsity, work)
    int8 = mptc.compile(packed, target="arm", board=board, out=work / "int8", calibration=calibration)
    mptc.compile(packed, target="arm", board=board, out=work / "fp32")
    counted = {
        "mptc int8": instructions.instruction_counts(work / "int8", board, runs=1).total,
        "mptc fp32": instructions.instruction_counts(work / "fp32", board, runs=1).total,
        "onnxruntime fp32": instructions.instruction_counts(work / "fp32", board, runs=1, engine="onnxruntime").total,
        "onnxruntime int8": instructions.instruction_counts(
            int8_peer(exported, calibration, work / "int8", work / "ort-int8"),
            board,
            runs=1,
            engine="onnxruntime",
            tolerance=INT8_PEER_TOLERANCE,
        ).total,
    }
    kernels = sorted({layer["kernel"] for layer in int8.layers})
    print(f"  {model_name} at {sparsity}: int8 build's layers take {', '.join(kernels)}", flush=True)
    return counted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet18,vgg-small")
    parser.add_argument("--sparsities", default="0.1,0.5,0.9")
    parser.add_argument(
        "--dataset", default=DATASET, help=f"the tickets' input data (default {DATASET}; digits: the MLP's)"
    )
    parser.add_argument("--board", default="rpi5", help="a board with dotprod: rpi5 or jetson-orin (default rpi5)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    print(
        f"board: emulated {args.board} (qemu -cpu {get_board(args.board).qemu_cpu}), 1 thread; "
        f"peer {instructions.peer_version()} (aarch64)"
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="mptc-arm-int8-") as tmp:
        for model_name in args.models.split(","):
            for sparsity in (float(s) for s in args.sparsities.split(",")):
                work = Path(tmp) / f"{model_name}-{sparsity}"
                work.mkdir()
                rows.append((model_name, sparsity, bench(model_name, args.dataset, sparsity, args.board, work)))
    print("\n| model | sparsity | mptc int8 | mptc fp32 | onnxruntime int8 | onnxruntime fp32 | vs int8 | vs fp32 |")
    print("|---|---|---|---|---|---|---|---|")
    for model_name, sparsity, c in rows:
        print(
            f"| {model_name} | {sparsity:.1f} | {c['mptc int8'] / 1e6:.2f} M | {c['mptc fp32'] / 1e6:.2f} M "
            f"| {c['onnxruntime int8'] / 1e6:.2f} M | {c['onnxruntime fp32'] / 1e6:.2f} M "
            f"| {c['onnxruntime int8'] / c['mptc int8']:.2f}x | {c['onnxruntime fp32'] / c['mptc int8']:.2f}x |"
        )


if __name__ == "__main__":
    main()
