"""Fold an inference BatchNormalization or a per-channel constant Mul/Add into ``scale``/``bias``.

For an ``ai.mptc`` operator ``y = scale * dot + bias`` (per output channel ``o``, axis 1)::

    BatchNormalization(y; gamma, beta, mean, var, eps):
        k = gamma / sqrt(var + eps);  scale' = scale * k;  bias' = (bias - mean) * k + beta
    Mul(y, c):  scale' = scale * c;  bias' = bias * c
    Add(y, c):  bias' = bias + c

so the folded operator computes the same ``y`` in one fused output transform (the maths in
docs/operators.md, as Larq Compute Engine's output transform and onnxscript's
``_fuse_batchnorm`` rule).
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import onnx_ir as ir

from mptc.passes._graph import Skip, check_packed_graph, constant_array, is_mptc, is_op, label, replace_constant_input

logger = logging.getLogger(__name__)


def per_channel(array: np.ndarray | None, rank: int, channels: int) -> np.ndarray | None:
    """``array`` as a float64 ``(channels,)`` vector if it broadcasts along axis 1 only, else None.

    Accepts one element, ``(O,)`` for 2-D outputs, ``(O, 1, 1)`` / ``(1, O, 1, 1)`` for NCHW and
    the like: after padding the shape to ``rank`` every axis but axis 1 must be 1.
    """
    if array is None or array.ndim > rank or not np.issubdtype(array.dtype, np.floating):
        return None
    shape = (1,) * (rank - array.ndim) + array.shape
    if any(d != 1 for i, d in enumerate(shape) if i != 1) or shape[1] not in (1, channels):
        return None
    return np.broadcast_to(array.reshape(-1).astype(np.float64), (channels,))


class FoldBatchNormIntoScalePass(ir.passes.InPlacePass):
    """Fold what follows an ``ai.mptc`` operator into its ``scale`` and ``bias`` inputs.

    Cases (repeated until nothing more folds, so ``BN -> Mul -> Add`` all go)::

        BatchNormalization(Binary*(x, s, m, scale, bias), gamma, beta, mean, var) -> Binary*(x, s, m, scale', bias')
        Mul(Binary*(...), c) or Mul(c, Binary*(...))                             -> Binary*(x, s, m, scale*c, bias*c)
        Add(Binary*(...), c) or Add(c, Binary*(...))                             -> Binary*(x, s, m, scale, bias+c)

    Precondition (:meth:`requires`): every ``ai.mptc`` operator is well formed (five inputs, one
    output), since the fold reads ``scale`` and ``bias`` by position. Postcondition
    (:meth:`ensures`): nothing more folds. New ``scale``/``bias`` initializers replace the old
    ones, which are dropped unless shared.

    A fold needs: the operator's output has that node as its only user and is not a graph output;
    ``scale``, ``bias`` and every BN/Mul/Add parameter are constants, per output channel (or a
    single element); BatchNormalization is in inference mode (``training_mode`` 0, one output).
    Left alone otherwise, with the reason logged and kept in :attr:`skipped` under the operator's
    label: training-mode BN, non-constant or non-per-channel operands (e.g. a residual Add of two
    tensors), operators with several users. Other users (Relu, Where, ...) are no candidates.
    """

    def __init__(self) -> None:
        super().__init__()
        self.skipped: list[str] = []

    def requires(self, model: ir.Model) -> None:
        check_packed_graph(model)

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        self.skipped = []
        modified = False
        for node in model.graph:
            if not is_mptc(node):
                continue
            try:
                while (fold := _next_fold(node)) is not None:
                    _apply(model.graph, node, fold)
                    modified = True
            except Skip as reason:
                self.skipped.append(f"{label(node)}: {reason}")
                logger.info("left %s as it is: %s", label(node), reason)
        return ir.passes.PassResult(model, modified=modified)

    def ensures(self, model: ir.Model) -> None:
        for node in model.graph:
            try:
                fold = _next_fold(node) if is_mptc(node) else None
            except Skip:
                continue
            if fold is not None:
                raise ir.passes.PostconditionError(f"{label(fold.user)} could still fold into {label(node)}")


@dataclasses.dataclass(frozen=True)
class _Fold:
    """``user`` (the node after the operator) folded: the operator's new ``scale`` and ``bias``."""

    user: ir.Node
    scale: np.ndarray
    bias: np.ndarray


def _next_fold(node: ir.Node) -> _Fold | None:
    """The fold of the BatchNormalization, Mul or Add after ``node``; None when none follows.

    Raises:
        Skip: one follows but does not fold; the message says why.
    """
    output = node.outputs[0]
    uses = output.uses()
    user = next(
        (use.node for use in uses if any(is_op(use.node, op) for op in ("BatchNormalization", "Mul", "Add"))), None
    )
    if user is None:
        return None
    if len(uses) != 1:
        raise Skip(f"its output has {len(uses)} uses, so {label(user)} cannot fold into it")
    if output.is_graph_output():
        raise Skip(f"its output is a graph output, so {label(user)} cannot fold into it")
    scale, bias = constant_array(node.inputs[3]), constant_array(node.inputs[4])
    if scale is None or bias is None:
        raise Skip(f"its scale or bias is not a constant, so {label(user)} cannot fold into it")
    rank = 4 if node.op_type == "BinaryConv" else 2
    k, shift = _fold(user, output, rank, scale.shape[0])
    new_scale = (scale.astype(np.float64) * k).astype(np.float32)
    new_bias = (bias.astype(np.float64) * k + shift).astype(np.float32)
    return _Fold(user, new_scale, new_bias)


def _apply(graph: ir.Graph, node: ir.Node, fold: _Fold) -> None:
    """Give ``node`` the folded ``scale`` and ``bias`` and remove ``fold.user``."""
    base = node.name or node.op_type
    replace_constant_input(graph, node, 3, f"{base}.scale", fold.scale)
    replace_constant_input(graph, node, 4, f"{base}.bias", fold.bias)
    # The user's output takes over: same name, type and shape, graph outputs included.
    output, replaced = node.outputs[0], fold.user.outputs[0]
    name, type_, shape = replaced.name, replaced.type, replaced.shape
    ir.convenience.replace_all_uses_with(replaced, output, replace_graph_outputs=True)
    graph.remove(fold.user, safe=True)
    output.name, output.type, output.shape = name, type_, shape
    logger.info("folded %s into %s", label(fold.user), label(node))


_BN_PARAMETERS = ("scale", "B", "input_mean", "input_var")  # ONNX's names for gamma, beta, mean, var


def _fold(user: ir.Node, value: ir.Value, rank: int, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """``(k, shift)`` with ``user(y) = k * y + shift`` per channel.

    Raises:
        Skip: ``user`` does not fold; the message says why.
    """
    if is_op(user, "BatchNormalization"):
        if user.inputs[0] is not value:
            raise Skip(f"{label(user)} reads its output as a parameter, not as the input")
        if user.attributes.get_int("training_mode", 0) or len(user.outputs) != 1:
            raise Skip(f"{label(user)} is in training mode; only an inference BatchNormalization folds")
        params = []
        for name, parameter in zip(_BN_PARAMETERS, user.inputs[1:5]):
            array = per_channel(constant_array(parameter), 2, channels)  # (O,) as (1, O)
            if array is None:
                raise Skip(f"{label(user)}'s {name} is not a constant per output channel")
            params.append(array)
        gamma, beta, mean, var = params
        variance = var + user.attributes.get_float("epsilon", 1e-5)
        bad = int(np.count_nonzero(~(variance > 0)))  # NaN counts as bad too
        if bad:
            raise Skip(
                f"{label(user)}'s input_var + epsilon is not positive in {bad} channel(s): it has no square root"
            )
        k = gamma / np.sqrt(variance)
        return k, beta - mean * k
    other = user.inputs[1] if user.inputs[0] is value else user.inputs[0]
    c = per_channel(constant_array(other), rank, channels)
    if c is None:
        raise Skip(f"{label(user)}'s other operand is not a constant per output channel")
    return (c, np.zeros(channels)) if user.op_type == "Mul" else (np.ones(channels), c)
