"""``export_onnx``: a run's ticket -> standard ONNX with frozen sparse +-alpha weights, self-checked.

The model is frozen (:mod:`mptc.export.freeze`), exported with PyTorch's dynamo exporter with
its graph optimiser OFF (it would fold BatchNorm into the ternary weights; we keep
``BatchNormalization`` and let ``mptc.passes`` fold it into the packed operator's scale),
constant-folded, checked with ``onnx.checker`` (full) and then run in onnxruntime against
PyTorch on held-out data.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir
import torch
from torch import nn

from mptc import __version__
from mptc.data import Dataset, load_dataset
from mptc.errors import InputError, VerificationError
from mptc.export.freeze import freeze
from mptc.io import write_bytes
from mptc.nn.layers import masked_layers
from mptc.ticket import load_ticket
from mptc.train.loop import evaluate
from mptc.train.rundir import RunDir
from mptc.verify import require_finite, within

ONNX_IR_VERSION = 10  # onnxruntime 1.31 reads IR <= 13; onnx 1.23 writes 14 by default
DEFAULT_OPSET = 18
INPUT_NAME, OUTPUT_NAME = "input", "logits"
CHECK_SAMPLES = 256
RTOL, ATOL = 1e-4, 1e-5
MAX_ARGMAX_DISAGREEMENT = 0.01
MAX_MISMATCH_FRACTION = 0.01
# With binary activations a pre-activation within float rounding of 0 (real-valued shortcuts,
# BatchNorm, real-input layers sum in a runtime-specific order) can take the other sign and move
# that sample's logits; deep MPT-1/1 ResNets see this on a few percent of samples.
MAX_MISMATCH_FRACTION_BINARY = 0.05

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportReport:
    """What the export measured: parity with PyTorch and accuracy at every stage so far."""

    path: Path
    max_abs_diff: float
    argmax_agreement: float
    mismatched_fraction: float
    pytorch_accuracy: float
    onnx_accuracy: float
    samples: int

    def to_json(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items()}


def to_onnx(module: nn.Module, sample: torch.Tensor, opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """Export a frozen module with a dynamic batch dimension; quiet, constant-folded, IR 10."""
    from onnxscript import optimizer

    quiet = [
        logging.getLogger(name)
        for name in (
            "torch.onnx",
            "torch.onnx._internal.exporter._registration",
            "torch.onnx._internal.exporter._compat",
        )
    ]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            program = torch.onnx.export(
                module,
                (sample,),
                dynamo=True,
                optimize=False,
                opset_version=opset,
                verbose=False,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: torch.export.Dim("batch")},),
            )
    finally:
        for logger, level in zip(quiet, levels):
            logger.setLevel(level)
    model = program.model
    optimizer.fold_constants(model)
    static_batch_reshapes(model)
    ir.passes.common.RemoveUnusedNodesPass()(model)
    proto = ir.serde.serialize_model(model)
    proto.ir_version = ONNX_IR_VERSION
    return proto


def static_batch_reshapes(model: ir.Model) -> int:
    """``Reshape(x, shape(batch, d1..dk))`` -> ``Reshape(x, [-1, d1..dk])``; returns how many.

    A functional flatten in a user's model (``x.flatten(1)``, ``x.view(x.size(0), -1)``), unlike
    an ``nn.Flatten`` (:class:`~mptc.export.freeze.ExportFlatten`), exports under a dynamic batch
    as a shape computed from ``Shape(x)[0]``, which compilers must evaluate symbolically (TVM's
    importer cannot). When the exporter recorded the output as ``(batch, d1..dk)`` with every
    ``d`` static, the constant ``[-1, d1..dk]`` is the same shape; the computation is then unused.
    Left alone: constant shapes, outputs of unknown rank or with another symbolic dimension.
    """
    rewritten = 0
    for node in model.graph:
        if node.op_type != "Reshape" or node.domain not in ("", "ai.onnx") or len(node.inputs) < 2:
            continue
        shape_input, output = node.inputs[1], node.outputs[0]
        if shape_input is None or shape_input.const_value is not None or output.shape is None:
            continue
        dims = list(output.shape)
        if not dims or isinstance(dims[0], int) or not all(isinstance(d, int) for d in dims[1:]):
            continue
        constant = ir.Value(
            name=f"{output.name}.static_shape", const_value=ir.tensor(np.array([-1, *dims[1:]], dtype=np.int64))
        )
        constant.shape = ir.Shape([len(dims)])
        constant.type = ir.TensorType(ir.DataType.INT64)
        model.graph.register_initializer(constant)
        node.replace_input_with(1, constant)
        rewritten += 1
    return rewritten


def ort_session(model: onnx.ModelProto):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def run_onnx(model: onnx.ModelProto, x: np.ndarray, batch: int = 512) -> np.ndarray:
    """Outputs of ``model`` in onnxruntime on ``x``, batch by batch."""
    session = ort_session(model)
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[i : i + batch]})[0] for i in range(0, len(x), batch)])


def decisive_agreement(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Argmax agreement over the samples whose reference decision is not a tie.

    Ternary weights on sign activations give logits that are integer multiples of alpha, so
    exact ties between classes are common; float noise then picks either, and such a sample
    says nothing about the two stages.
    """
    top2 = np.sort(reference, axis=1)[:, -2:]
    decisive = (top2[:, 1] - top2[:, 0]) > ATOL + RTOL * np.abs(reference).max(axis=1)
    if not decisive.any():
        return 1.0
    return float((reference.argmax(1) == candidate.argmax(1))[decisive].mean())


def compare_logits(
    reference: np.ndarray, candidate: np.ndarray, what: str, binary_act: bool = False
) -> tuple[float, float, float]:
    """(max abs diff, argmax agreement, fraction of samples off tolerance); raises past limits,
    and on NaN or Inf in either (:mod:`mptc.verify`: a NaN difference would pass ``diff > tol``)."""
    require_finite(reference, f"{what}: the reference logits")
    require_finite(candidate, f"{what}: the compared logits")
    diff = np.abs(reference - candidate)
    tolerance = ATOL + RTOL * np.abs(reference).max(axis=1, keepdims=True)
    mismatched = float((~within(diff, tolerance)).any(axis=1).mean())
    agreement = decisive_agreement(reference, candidate)
    allowed = MAX_MISMATCH_FRACTION_BINARY if binary_act else MAX_MISMATCH_FRACTION
    if mismatched > allowed or agreement < 1.0 - MAX_ARGMAX_DISAGREEMENT:
        raise VerificationError(
            f"{what} disagree: max abs diff {diff.max():.3g}, {mismatched:.1%} of samples beyond "
            f"{RTOL:g} relative, argmax agreement {agreement:.1%}"
        )
    return float(diff.max()), agreement, mismatched


def _metadata(model: nn.Module, config, accuracy: float) -> dict[str, str]:
    layers = [
        {
            "layer": name,
            "sparsity": 1.0 - layer.kept / layer.weight.numel(),
            "alpha": layer.alpha().detach().reshape(-1).tolist(),
        }
        for name, layer in masked_layers(model)
    ]
    return {
        "mptc.version": __version__,
        "mptc.method": config.method,
        "mptc.binary_act": json.dumps(config.binary_act),
        "mptc.model": config.model,
        "mptc.dataset": config.dataset,
        "mptc.seed": str(config.seed),
        "mptc.init": str(config.init),
        "mptc.sparsity": json.dumps(config.sparsity),
        "mptc.layers": json.dumps(layers),
        "mptc.sign_convention": "sign(0)=+1; Where(x >= 0, 1, -1)",
        "mptc.accuracy": json.dumps(accuracy),
    }


def export_run(
    run_dir: str | Path, output: str | Path, *, fmt: str = "onnx", opset: int = DEFAULT_OPSET
) -> ExportReport:
    """Export a run directory's ticket to ``output`` (``fmt`` ``onnx`` or ``qonnx``)."""
    run = RunDir(Path(run_dir))
    if not run.ticket.is_file():
        raise InputError(f"{run.root} has no ticket.safetensors: train it first (or finish it with --resume)")
    model, config = load_ticket(run.ticket)
    return export_model(model, config, load_dataset(config.dataset), output, fmt=fmt, opset=opset)


def export_model(
    model: nn.Module, config, dataset: Dataset, output: str | Path, *, fmt: str = "onnx", opset: int = DEFAULT_OPSET
) -> ExportReport:
    """Freeze, export, check and write ``model``; see :func:`export_run`."""
    if fmt not in ("onnx", "qonnx"):
        raise InputError(f"unknown export format {fmt!r}; expected onnx or qonnx")
    if opset < 17:
        raise InputError(f"opset {opset} is too old; mptc exports opset 17 or newer")
    frozen = freeze(model)
    test_x = dataset.test.x
    with torch.no_grad():
        reference = frozen(test_x).numpy()
        latent = model.eval()(test_x).numpy()
    compare_logits(latent, reference, "the frozen model and the trained model", config.binary_act)
    proto = to_onnx(frozen, test_x[:2], opset)
    onnx_logits = run_onnx(proto, test_x.numpy())
    max_diff, agreement, mismatched = compare_logits(
        reference[:CHECK_SAMPLES], onnx_logits[:CHECK_SAMPLES], "PyTorch and onnxruntime", config.binary_act
    )
    labels = dataset.test.y.numpy()
    onnx_accuracy = float((onnx_logits.argmax(1) == labels).mean())
    pytorch_accuracy, _ = evaluate(frozen, dataset.test)
    if fmt == "qonnx":
        from mptc.export.qonnx import to_qonnx

        proto = to_qonnx(proto, check_input=test_x[:CHECK_SAMPLES].numpy(), expected=onnx_logits[:CHECK_SAMPLES])
    onnx.helper.set_model_props(proto, _metadata(model, config, onnx_accuracy))
    onnx.checker.check_model(proto, full_check=fmt == "onnx")
    write_bytes(output, proto.SerializeToString())
    return ExportReport(
        Path(output), max_diff, agreement, mismatched, pytorch_accuracy, onnx_accuracy, min(CHECK_SAMPLES, len(test_x))
    )
