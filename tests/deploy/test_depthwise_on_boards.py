"""The depthwise kernel's NEON build on an emulated board, matching onnxruntime."""

from __future__ import annotations

import re
from pathlib import Path

import onnx
import pytest
from onnx import helper

from mptc.deploy.profile import profile
from mptc.targets.compile import compile_model
from tests.targets.glue_models import depthwise_model

pytestmark = pytest.mark.emulated


def _strided_then_plain() -> onnx.ModelProto:
    """Depthwise 3x3 stride 2 + ReLU6 (112 -> 56), then stride 1 + ReLU: both take the kernel."""
    first = depthwise_model((1, 8, 112, 112), stride=2, act="clip")
    second = depthwise_model((1, 8, 56, 56), act="relu")
    graph = first.graph
    rename = {name: f"{name}2" for name in ("w", "b", "c", "a", "y")} | {"x": "y"}
    for init in second.graph.initializer:
        init.name = rename.get(init.name, init.name)
        graph.initializer.append(init)
    for node in second.graph.node:
        node.input[:] = [rename.get(i, i) for i in node.input]
        node.output[:] = [rename.get(o, o) for o in node.output]
        node.name = node.output[0]
        graph.node.append(node)
    graph.output[0].name = "y2"
    return helper.make_model(graph, opset_imports=first.opset_import, ir_version=first.ir_version)


def test_depthwise_convs_run_on_the_emulated_rpi4(arm_ready: Path, tmp_path: Path) -> None:
    out = tmp_path / "rpi4"
    compile_model(_strided_then_plain(), "arm", out, board="rpi4")
    kernels = re.findall(rb"__tvm_ffi_(\w+)\0", (out / "module.so").read_bytes())
    # both convs run the depthwise kernel (named for their nodes, c and c2), not TVM's conv2d
    assert len({name for name in kernels if name.startswith(b"mptc_0_c")}) == 2
    assert not any(b"conv2d" in name for name in kernels)
    report = profile(out, emulated_board="rpi4", repeat=2)
    assert report["outputs_match"] and report["argmax_match"], report
