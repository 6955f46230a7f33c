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

import logging

import numpy as np
import onnx_ir as ir

from mptc.passes._graph import constant_array, is_mptc, is_op, label, replace_constant_input

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

    Preconditions: the operator's output has that node as its only user and is not a graph output;
    ``scale``, ``bias`` and every BN/Mul/Add parameter are constants, per output channel (or a
    single element); BatchNormalization is in inference mode (``training_mode`` 0, one output).
    New ``scale``/``bias`` initializers replace the old ones, which are dropped unless shared.

    Left alone: training-mode BN, non-constant or non-per-channel operands (e.g. a residual Add of
    two tensors), operators with several users.
    """

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        modified = False
        for node in model.graph:
            if is_mptc(node):
                while self._fold_next(model.graph, node):
                    modified = True
        return ir.passes.PassResult(model, modified=modified)

    def _fold_next(self, graph: ir.Graph, node: ir.Node) -> bool:
        output = node.outputs[0]
        users = output.uses()
        if len(users) != 1 or output.is_graph_output():
            return False
        user = users[0].node
        scale, bias = constant_array(node.inputs[3]), constant_array(node.inputs[4])
        if scale is None or bias is None:
            return False
        rank = 4 if node.op_type == "BinaryConv" else 2
        channels = scale.shape[0]
        folded = _fold(user, output, rank, channels)
        if folded is None:
            return False
        k, shift = folded
        new_scale = (scale.astype(np.float64) * k).astype(np.float32)
        new_bias = (bias.astype(np.float64) * k + shift).astype(np.float32)
        base = node.name or node.op_type
        replace_constant_input(graph, node, 3, f"{base}.scale", new_scale)
        replace_constant_input(graph, node, 4, f"{base}.bias", new_bias)
        # The user's output takes over: same name, type and shape, graph outputs included.
        replaced = user.outputs[0]
        name, type_, shape = replaced.name, replaced.type, replaced.shape
        ir.convenience.replace_all_uses_with(replaced, output, replace_graph_outputs=True)
        graph.remove(user, safe=True)
        output.name, output.type, output.shape = name, type_, shape
        logger.info("folded %s into %s", label(user), label(node))
        return True


def _fold(user: ir.Node, value: ir.Value, rank: int, channels: int) -> tuple[np.ndarray, np.ndarray] | None:
    """``(k, shift)`` with ``user(y) = k * y + shift`` per channel, or None if ``user`` does not fold."""
    if is_op(user, "BatchNormalization"):
        if user.inputs[0] is not value or user.attributes.get_int("training_mode", 0) or len(user.outputs) != 1:
            return None
        params = [per_channel(constant_array(v), 2, channels) for v in user.inputs[1:5]]  # (O,) as (1, O)
        if any(p is None for p in params):
            return None
        gamma, beta, mean, var = params
        k = gamma / np.sqrt(var + user.attributes.get_float("epsilon", 1e-5))
        return k, beta - mean * k
    if (is_op(user, "Mul") or is_op(user, "Add")) and len(user.inputs) == 2:
        other = user.inputs[1] if user.inputs[0] is value else user.inputs[0]
        if other is value:
            return None
        c = per_channel(constant_array(other), rank, channels)
        if c is None:
            return None
        return (c, np.zeros(channels)) if user.op_type == "Mul" else (np.ones(channels), c)
    return None
