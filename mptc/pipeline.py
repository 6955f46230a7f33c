"""train -> export -> optimize -> compile -> profile in one folder, with every stage checked.

The folder holds (see :class:`PipelineFolder`):

* ``run/`` - the training run; a finished one is reused, an interrupted one resumes from its
  checkpoint;
* ``model.onnx`` - the ticket exported to fp32 ONNX (the export checks it against PyTorch);
* ``packed.onnx`` - after the ``mptc.passes`` pipeline;
* ``compiled/`` - the output of ``compile_model`` (laid out as :mod:`mptc.artifact`).

Accuracy is measured on the test split at every stage: PyTorch (the ticket rebuilt from seed +
mask bits), the exported ONNX and the packed ONNX in onnxruntime (the packed one through its
function bodies), with int8 activations the quantized ONNX (``compiled/source.onnx``), and the
compiled module when it was built for this host. A stage that loses
more than :data:`MAX_STAGE_DROP` against the one before it fails the run, and so does a module
whose output on the device differs from its reference.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from mptc.artifact import MODULE_FILE, SOURCE_MODEL_FILE, Manifest, read_manifest
from mptc.config import TrainConfig
from mptc.data import load_dataset
from mptc.data.base import Dataset
from mptc.errors import VerificationError
from mptc.export.onnx_export import run_onnx
from mptc.train.rundir import RunDir
from mptc.verify import require_finite, within

MAX_STAGE_DROP = 0.01  # accuracy lost between two stages beyond this is a failed run
CALIBRATION_SAMPLES = 512  # training samples the ranges of int8 activations are calibrated on
STAGES = ("train", "export", "optimize", "compile", "accuracy", "profile")  # named to on_stage as each starts


@dataclass(frozen=True)
class DeviceOptions:
    """Where compiled modules run: here (``None`` everywhere), an RPC server, a tracker, or an
    emulated board started here (``emulate``); and the number format of the activations they are
    compiled for (``int8``: calibrated on :data:`CALIBRATION_SAMPLES` training samples)."""

    target: str = "x86"
    board: str | None = None
    rpc: str | None = None
    tracker: str | None = None
    key: str | None = None
    emulate: str | None = None
    repeat: int = 30
    activations: str = "fp32"

    @property
    def runs_here(self) -> bool:
        return self.target == "x86" and not (self.rpc or self.tracker or self.emulate)


@dataclass(frozen=True)
class PipelineFolder:
    """The files of one pipeline run, one per stage."""

    root: Path

    @property
    def run(self) -> RunDir:
        return RunDir(self.root / "run")

    @property
    def fp32_model(self) -> Path:
        return self.root / "model.onnx"

    @property
    def packed_model(self) -> Path:
        return self.root / "packed.onnx"

    @property
    def compiled(self) -> Path:
        return self.root / "compiled"


@dataclass(frozen=True)
class PipelineResult:
    """What each stage produced."""

    folder: PipelineFolder
    dataset: Dataset
    metrics: dict[str, Any]  # the training run's metrics.json
    accuracy: dict[str, float | None]  # pytorch, onnx, packed_onnx[, int8_onnx], module (None unless it runs here)
    manifest: Manifest
    profile: dict[str, Any]  # the device's report, as in compiled/profile.json

    @property
    def batch(self) -> int:
        """The module's static batch."""
        return self.manifest.input.shape[0]


def run_pipeline(
    config: TrainConfig, folder: str | Path, device: DeviceOptions, on_stage: Callable[[str], None] | None = None
) -> PipelineResult:
    """Take ``config`` through every stage in ``folder`` and check each against the one before.

    ``on_stage`` is called with each name of :data:`STAGES` as that stage starts (a progress bar).

    Raises:
        VerificationError: a stage lost accuracy, or the module's output on the device differs
            from its reference. Each stage raises its own typed errors too.
    """
    from mptc.export import export_model
    from mptc.passes.pipeline import optimize_file
    from mptc.targets.compile import compile_model
    from mptc.ticket import load_ticket

    stage = on_stage or (lambda _: None)
    paths = PipelineFolder(Path(folder))
    stage("train")
    metrics = train_ticket(config, paths.run)
    stage("export")
    dataset = load_dataset(config.dataset)
    model, trained_config = load_ticket(paths.run.ticket)
    export = export_model(model, trained_config, dataset, paths.fp32_model)
    stage("optimize")
    optimize_file(paths.fp32_model, paths.packed_model)
    stage("compile")
    calibration = calibration_samples(dataset) if device.activations == "int8" else None
    compile_model(paths.packed_model, device.target, paths.compiled, board=device.board, calibration=calibration)
    manifest = read_manifest(paths.compiled)
    stage("accuracy")

    x, labels = dataset.test.x.numpy(), dataset.test.y.numpy()
    accuracy = {
        "pytorch": export.pytorch_accuracy,
        "onnx": export.onnx_accuracy,
        "packed_onnx": onnx_accuracy(paths.packed_model, x, labels),
        **(
            {"int8_onnx": onnx_accuracy(paths.compiled / SOURCE_MODEL_FILE, x, labels)}
            if calibration is not None
            else {}
        ),
        "module": None,
    }
    if device.runs_here:
        accuracy["module"] = module_accuracy(paths.compiled / MODULE_FILE, x, labels, manifest.input.shape[0])
    check_stages(accuracy)
    stage("profile")
    return PipelineResult(paths, dataset, metrics, accuracy, manifest, profile_on_device(paths.compiled, device))


def calibration_samples(dataset: Dataset) -> np.ndarray:
    """The training samples int8 activations are calibrated on (never the test split)."""
    return np.ascontiguousarray(dataset.train.x[:CALIBRATION_SAMPLES].numpy(), np.float32)


def train_ticket(config: TrainConfig, run: RunDir) -> dict[str, Any]:
    """The run's metrics: a finished run is reused, an interrupted one resumes from its checkpoint."""
    from mptc.train.loop import train

    if run.metrics.is_file() and run.ticket.is_file():
        return json.loads(run.metrics.read_text())
    return train(config, run.root, resume=run.checkpoint.is_file()).metrics


def profile_on_device(compiled: Path, device: DeviceOptions) -> dict[str, Any]:
    """``mptc profile`` of ``compiled`` on ``device``; a wrong output there is a VerificationError."""
    from mptc.deploy.profile import profile

    measured = profile(
        compiled,
        rpc=device.rpc,
        tracker=device.tracker,
        key=device.key,
        repeat=device.repeat,
        emulated_board=device.emulate,
    )
    if not measured.get("outputs_match", False):
        raise VerificationError(f"compiled module's output does not match the reference on the device ({compiled})")
    return measured


def check_stages(accuracy: dict[str, float | None]) -> None:
    """Fail when a stage loses accuracy against the one before it (beyond float noise)."""
    stages = [(name, value) for name, value in accuracy.items() if value is not None]
    for (before, a), (after, b) in zip(stages, stages[1:]):
        if not within(a - b, MAX_STAGE_DROP):
            raise VerificationError(f"accuracy drops from {a:.4f} ({before}) to {b:.4f} ({after})")


def onnx_accuracy(path: str | Path, x: np.ndarray, labels: np.ndarray) -> float:
    """Test accuracy of an ONNX file in onnxruntime."""
    return _top1(run_onnx(onnx.load(str(path)), x), labels)


def module_logits(module_path: str | Path, x: np.ndarray, batch: int) -> np.ndarray:
    """Outputs of a compiled Relax module run on this host, ``batch`` samples per call
    (the module's static batch)."""
    import tvm

    from mptc.deploy.artifact import load_library

    lib = load_library(module_path)
    device = tvm.cpu()
    vm = tvm.runtime.vm.VirtualMachine(lib, device)
    outputs = []
    for start in range(0, len(x) - len(x) % batch, batch):
        outputs.append(vm["main"](tvm.runtime.tensor(np.ascontiguousarray(x[start : start + batch]), device)).numpy())
    return np.concatenate(outputs)


def module_accuracy(module_path: str | Path, x: np.ndarray, labels: np.ndarray, batch: int) -> float:
    """Test accuracy of a compiled module run on this host (a trailing partial batch is left out)."""
    logits = module_logits(module_path, x, batch)
    return _top1(logits, labels[: len(logits)])


def _top1(logits: np.ndarray, labels: np.ndarray) -> float:
    require_finite(logits, "the logits")  # the argmax of NaN logits is a class like any other
    return float((logits.argmax(1) == labels).mean())
