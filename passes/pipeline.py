"""The one optimization pipeline: exported ONNX with ternary float weights -> packed ``ai.mptc`` ONNX.

Order matters: the weight quantizers of QONNX and QCDQ exports fold into float constants first,
before version conversion and shape inference meet their custom or old-opset nodes; shape inference
tells packing the rank of MatMul inputs; packing creates the ``ai.mptc`` nodes both folds look at
(the sign fold works on a node's input, the BatchNormalization fold on its output, so their order
between them is free); cleanup runs after them so the Where/BN nodes, quantizers and float weights
they orphaned disappear before the function bodies are attached.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import onnx
import onnx_ir as ir
import onnx_ir.passes.common as common_passes
from google.protobuf.message import DecodeError, Message
from onnxscript.version_converter import ConvertVersionPass

from mptc.errors import InputError, MptcError, UnsupportedError, first_line
from mptc.io import file_kind, write_bytes
from mptc.ops import functions
from mptc.ops.reference import DOMAIN
from mptc.ops.validate import check_node_sizes
from mptc.passes._graph import read_ir, root_message
from mptc.passes.attach_function_bodies import AttachFunctionBodiesPass
from mptc.passes.fold_batch_norm_into_scale import FoldBatchNormIntoScalePass
from mptc.passes.fold_sign_into_binary_input import FoldSignIntoBinaryInputPass
from mptc.passes.fold_weight_quantizers import FoldWeightQuantizersPass
from mptc.passes.pack_ternary_weights import PackTernaryWeightsPass

IR_VERSION = 10
"""IR version written: onnxruntime 1.31 reads at most 13, function attribute defaults need >= 9."""

_REASONS_SHOWN = 3  # layers named in the "nothing to pack" error; the message stays one line

Rewrites = tuple[
    FoldWeightQuantizersPass, PackTernaryWeightsPass, FoldSignIntoBinaryInputPass, FoldBatchNormIntoScalePass
]


def rewrite_passes() -> Rewrites:
    """New passes that fold quantizers, pack and fold, in pipeline order; each keeps why it left a
    candidate alone."""
    return (
        FoldWeightQuantizersPass(),
        PackTernaryWeightsPass(),
        FoldSignIntoBinaryInputPass(),
        FoldBatchNormIntoScalePass(),
    )


def build_pass_manager(opset: int, rewrites: Rewrites | None = None) -> ir.passes.PassManager:
    """The pipeline's passes for a model whose default-domain opset is ``opset``.

    Args:
        opset: the model's default-domain opset; below 19 the model is first converted up
            (the function bodies need it, see :mod:`mptc.ops.functions`).
        rewrites: the quantizer, packing and folding passes to use (to read their ``skipped``
            reasons afterwards); new ones by default.
    """
    fold_quantizers, *pack_and_fold = rewrites or rewrite_passes()
    passes: list[ir.passes.PassBase] = [fold_quantizers]
    if opset < functions.MIN_OPSET:
        passes.append(ConvertVersionPass(target_version=functions.MIN_OPSET, fallback=True))
    passes += [
        # Packing a MatMul needs its input's rank; exported models often carry no value_info.
        common_passes.ShapeInferencePass(strict_mode=False),
        *pack_and_fold,
        # Constant nodes (value_ints from the exporter) become initializers: TVM's importer
        # cannot read value_ints Constants, and every consumer reads initializers.
        common_passes.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0),
        common_passes.RemoveUnusedNodesPass(),
        AttachFunctionBodiesPass(),
        common_passes.RemoveUnusedOpsetsPass(),
        common_passes.TopologicalSortPass(),
    ]
    return ir.passes.PassManager(passes, steps=1)


def optimize(
    model: onnx.ModelProto, on_skip: Callable[[str], None] | None = None, *, require_packed: bool = True
) -> onnx.ModelProto:
    """Pack every ternary layer of ``model`` and fold signs and batch norms into the packed ops.

    Weights behind QONNX ``Quant``/``BipolarQuant`` or QCDQ ``DequantizeLinear`` are computed
    into float constants first (:mod:`mptc.passes.fold_weight_quantizers`), so ternary QONNX and
    QCDQ exports pack as the standard export does.

    Returns a new model (the input is not changed) that onnxruntime 1.31 runs as it is.
    ``on_skip`` is told each candidate a pass left as it is, as ``"<Pass> left <node>: <reason>"``,
    pass by pass, once the passes have run (before a "nothing to pack" error).

    Raises:
        InputError: the model is not valid ONNX.
        UnsupportedError: no layer could be packed and ``require_packed`` (the reasons per candidate
            are in the message; without it a model with nothing to pack comes back as it was),
            a construct the pipeline cannot handle, named, or a node past
            :data:`mptc.ops.validate.MAX_NODE_VALUES` inputs or outputs.
    """
    check_node_sizes(model.graph)
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError) as error:
        raise InputError(f"not a valid ONNX model: {first_line(error)}") from error
    ir_model = read_ir(model)
    rewrites = rewrite_passes()
    try:
        build_pass_manager(ir_model.opset_imports.get("", 1), rewrites)(ir_model)
    except Exception as error:
        typed = _typed_cause(error)
        if typed is None:
            raise
        # A fresh error of the same type keeps the CLI's exit code; the pass chain is its cause.
        raise type(typed)(str(typed)) from error
    if on_skip is not None:
        for rewrite in rewrites:
            for entry in rewrite.skipped:
                on_skip(f"{type(rewrite).__name__} left {entry}")
    if not any(node.domain == DOMAIN for node in ir_model.graph):
        if not require_packed:
            return model
        # A weight quantizer left alone says why before the layer it left unpackable.
        skipped = rewrites[0].unfolded_weights + rewrites[1].skipped
        reasons = "; ".join(skipped[:_REASONS_SHOWN]) or "the model has no Conv, Gemm or MatMul"
        if len(skipped) > _REASONS_SHOWN:
            reasons += f"; and {len(skipped) - _REASONS_SHOWN} more"
        raise UnsupportedError(f"no ternary Conv/Gemm/MatMul layer to pack: {reasons}")
    ir_model.ir_version = IR_VERSION
    try:
        return ir.to_proto(ir_model)
    except ir.serde.SerdeError as error:  # text onnx parsed but cannot write back: not UTF-8
        raise InputError(f"not a usable ONNX model: {root_message(error)}") from error


def optimize_file(src: str | os.PathLike, dst: str | os.PathLike) -> onnx.ModelProto:
    """:func:`optimize` from file to file; returns the packed model.

    Raises:
        InputError: ``src`` is missing, unreadable, corrupt or truncated.
        OutputError: ``dst`` cannot be written.
    """
    packed = optimize(load_model(src))
    write_bytes(dst, packed.SerializeToString())
    return packed


def load_model(path: str | os.PathLike) -> onnx.ModelProto:
    """Read an ONNX file, turning every way it can be unusable into one :class:`InputError`."""
    path = Path(path)
    if not path.is_file():  # a FIFO would block onnx.load until a writer came
        if not path.exists():
            raise InputError(f"{path}: no such file")
        raise InputError(f"{path}: not a file (it is {file_kind(path.stat().st_mode)})")
    try:
        model = onnx.load(os.fspath(path))
    except (DecodeError, onnx.onnx_cpp2py_export.checker.ValidationError, ValueError, RuntimeError) as error:
        raise InputError(f"{path}: not an ONNX model (corrupt or truncated): {first_line(error)}") from error
    except OSError as error:
        raise InputError(f"{path}: cannot read: {error.strerror or error}") from error
    if not model.HasField("graph") or not model.graph.node:
        raise InputError(f"{path}: not an ONNX model (no graph; corrupt or truncated file?)")
    field = _non_utf8_text(model)
    if field is not None:
        raise InputError(f"{path}: corrupt ONNX model: {field} is not UTF-8 text")
    if not model.graph.output:
        raise InputError(f"{path}: the graph has no outputs")
    check_node_sizes(model.graph)  # before any pass: onnx_ir's rewiring is quadratic in a node's inputs
    return model


def _non_utf8_text(message: Message, where: str = "model") -> str | None:
    """Where a text field holds bytes that are not UTF-8 (protobuf hands those back as
    ``bytes``; every later stage would fail on them), or None."""
    for field, value in message.ListFields():
        values = value if field.is_repeated else [value]
        if field.type == field.TYPE_STRING and any(isinstance(v, bytes) for v in values):
            return f"{where}.{field.name}"
        if field.type == field.TYPE_MESSAGE:
            for item in values:
                found = _non_utf8_text(item, f"{where}.{field.name}")
                if found is not None:
                    return found
    return None


def _typed_cause(error: BaseException) -> MptcError | None:
    """The first mptc error in a chain of causes (PassManager wraps what a pass raises)."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, MptcError):
            return seen
        seen = seen.__cause__
    return None
