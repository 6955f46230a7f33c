"""Attach the model-local ONNX function bodies of the ``ai.mptc`` operators a model uses."""

from __future__ import annotations

import onnx_ir as ir

from mptc.errors import UnsupportedError
from mptc.ops import functions
from mptc.ops.reference import DOMAIN, OPSET_VERSION


class AttachFunctionBodiesPass(ir.passes.InPlacePass):
    """Give every ``ai.mptc`` op type in the graph its function body (mptc/ops/functions.py).

    ``ai.mptc.Binary*(...) -> the same node, now defined by model.functions[("ai.mptc", op, "")]``:
    one function per op type, shared by its instances, built for the model's default-domain opset,
    so that onnxruntime and ``onnx.checker`` (full check) accept the model with no extra library.

    Precondition: default-domain opset >= ``functions.MIN_OPSET`` (19); the pipeline converts older
    models first. Leaves alone: functions already attached (a re-run is a no-op) and every other
    function of the model.
    """

    def requires(self, model: ir.Model) -> None:
        opset = model.opset_imports.get("", 1)
        if opset < functions.MIN_OPSET:
            raise UnsupportedError(
                f"{DOMAIN} function bodies need default-domain opset >= {functions.MIN_OPSET}, "
                f"the model imports {opset}"
            )

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        used = {node.op_type for node in model.graph if node.domain == DOMAIN}
        modified = False
        for op_type in sorted(used):
            if (DOMAIN, op_type, "") not in model.functions:
                body = functions.function(op_type, model.opset_imports[""])
                model.functions[body.identifier()] = body
                modified = True
        if used:
            model.opset_imports[DOMAIN] = OPSET_VERSION
        return ir.passes.PassResult(model, modified=modified)
