"""A corpus of outside-style models, written the way other tools export them: each one goes through
``mptc compile`` (packing first) for x86 and arm, and the x86 module matches onnxruntime on the
model as written (argmax equal, 1e-4 relative).

Forms: the standard ``Sign -> Conv`` binary conv (ONNX sign(0) = 0: the exact sign input mode),
Larq's ``Sign(Sign(x) + c)`` and ``2 * Cast(x >= 0) - 1`` (folded into binary input), a QCDQ
export (QuantizeLinear -> Clip -> DequantizeLinear on ternary weights), a ResNet basic block
with a stride-2 1x1 shortcut, folded batch-norm biases, global average pool and Flatten -> Gemm
head, and a MobileNetV2 inverted residual (1x1 expand, depthwise 3x3 with ReLU6 as Clip, 1x1
project, residual add) whose depthwise conv stays fp32. QONNX ``Quant`` nodes cannot run in
onnxruntime; their folding is tested against NumPy in ``tests/passes/test_fold_weight_quantizers.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import pytest

from mptc import api
from tests.passes.mptc_graphs import model_from_text, run_ort, ternary


def _sign_conv(rng: np.random.Generator) -> onnx.ModelProto:
    return model_from_text(
        """<ir_version: 10, opset_import: ["" : 19]>
        g (float[1,16,8,8] x) => (float[1,16,8,8] y) {
          s = Sign (x)
          y = Conv <pads = [1, 1, 1, 1]> (s, w, b)
        }""",
        w=ternary(rng, (16, 16, 3, 3), 0.5),
        b=rng.standard_normal(16).astype(np.float32),
    )


def _larq_sign_conv(rng: np.random.Generator) -> onnx.ModelProto:
    return model_from_text(
        """<ir_version: 10, opset_import: ["" : 19]>
        g (float[1,16,8,8] x) => (float[1,10] y) <float c = {0.5}> {
          s0 = Sign (x)
          t = Add (s0, c)
          s = Sign (t)
          h = Conv <pads = [1, 1, 1, 1], strides = [2, 2]> (s, w)
          f = Flatten (h)
          y = Gemm <transB = 1> (f, fc, fcb)
        }""",
        w=ternary(rng, (16, 16, 3, 3), 0.5),
        fc=rng.standard_normal((10, 256)).astype(np.float32) * 0.1,
        fcb=rng.standard_normal(10).astype(np.float32),
    )


def _cast_sign_dense(rng: np.random.Generator) -> onnx.ModelProto:
    return model_from_text(
        """<ir_version: 10, opset_import: ["" : 19]>
        g (float[2,96] x) => (float[2,10] y) <float zero = {0.0}, float two = {2.0}, float one = {1.0}> {
          ge = GreaterOrEqual (x, zero)
          c = Cast <to = 1> (ge)
          d = Mul (c, two)
          s = Sub (d, one)
          y = Gemm <transB = 1> (s, w, b)
        }""",
        w=ternary(rng, (10, 96), 0.3),
        b=rng.standard_normal(10).astype(np.float32),
    )


def _qcdq_conv(rng: np.random.Generator) -> onnx.ModelProto:
    weight = ternary(rng, (16, 8, 3, 3), 0.2)
    scale = np.abs(weight).reshape(16, -1).max(axis=1).astype(np.float32)
    return model_from_text(
        """<ir_version: 10, opset_import: ["" : 19]>
        g (float[1,8,10,10] x) => (float[1,16,10,10] y) <int8 lo = {-1}, int8 hi = {1}> {
          q = QuantizeLinear <axis = 0> (w, s, zp)
          c = Clip (q, lo, hi)
          wq = DequantizeLinear <axis = 0> (c, s, zp)
          h = Conv <pads = [1, 1, 1, 1]> (x, wq, b)
          y = Relu (h)
        }""",
        w=weight,
        s=scale,
        zp=np.zeros(16, np.int8),
        b=rng.standard_normal(16).astype(np.float32),
    )


def _resnet_block(rng: np.random.Generator) -> onnx.ModelProto:
    """conv3x3 s2 + bias -> relu -> conv3x3 + bias, shortcut conv1x1 s2 + bias, add, relu, GAP, Gemm."""
    return model_from_text(
        """<ir_version: 10, opset_import: ["" : 19]>
        g (float[1,16,12,12] x) => (float[1,10] y) {
          a = Conv <pads = [1, 1, 1, 1], strides = [2, 2]> (x, w1, b1)
          r = Relu (a)
          c = Conv <pads = [1, 1, 1, 1]> (r, w2, b2)
          s = Conv <strides = [2, 2]> (x, ws, bs)
          t = Add (c, s)
          u = Relu (t)
          p = GlobalAveragePool (u)
          f = Flatten (p)
          y = Gemm <transB = 1> (f, fc, fcb)
        }""",
        w1=ternary(rng, (32, 16, 3, 3), 0.1),
        b1=rng.standard_normal(32).astype(np.float32),
        w2=ternary(rng, (32, 32, 3, 3), 0.6),
        b2=rng.standard_normal(32).astype(np.float32),
        ws=ternary(rng, (32, 16, 1, 1), 0.2),
        bs=rng.standard_normal(32).astype(np.float32),
        fc=rng.standard_normal((10, 32)).astype(np.float32) * 0.3,
        fcb=rng.standard_normal(10).astype(np.float32),
    )


def _inverted_residual(rng: np.random.Generator) -> onnx.ModelProto:
    """MobileNetV2: 1x1 expand + ReLU6 (Clip), depthwise 3x3 + ReLU6, 1x1 project, residual add."""
    return model_from_text(
        """<ir_version: 10, opset_import: ["" : 19]>
        g (float[1,16,10,10] x) => (float[1,16,10,10] y) <float lo = {0.0}, float hi = {6.0}> {
          e = Conv (x, we, be)
          e6 = Clip (e, lo, hi)
          d = Conv <group = 64, pads = [1, 1, 1, 1]> (e6, wd, bd)
          d6 = Clip (d, lo, hi)
          p = Conv (d6, wp, bp)
          y = Add (p, x)
        }""",
        we=ternary(rng, (64, 16, 1, 1), 0.3),
        be=rng.standard_normal(64).astype(np.float32),
        wd=ternary(rng, (64, 1, 3, 3), 0.3),
        bd=rng.standard_normal(64).astype(np.float32),
        wp=ternary(rng, (16, 64, 1, 1), 0.9),
        bp=rng.standard_normal(16).astype(np.float32),
    )


CORPUS: dict[str, tuple[Callable[[np.random.Generator], onnx.ModelProto], dict[str, str]]] = {
    "sign-conv": (_sign_conv, {"y": "sign"}),
    "larq-sign-conv": (_larq_sign_conv, {"h": "binary"}),
    "cast-sign-dense": (_cast_sign_dense, {"y": "binary"}),
    "qcdq-conv": (_qcdq_conv, {"h": "real"}),
    "resnet-block": (_resnet_block, {"a": "real", "c": "real", "s": "real"}),
    "inverted-residual": (_inverted_residual, {"e": "real", "p": "real"}),
}


@pytest.mark.parametrize("name", CORPUS)
def test_outside_model_compiles_and_matches_onnxruntime(name, tmp_path):
    build, modes = CORPUS[name]
    model = build(np.random.default_rng(7))
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, path)
    manifest = api.compile(path, target="x86", out=tmp_path / "x86")
    assert {layer["name"]: layer["input_mode"] for layer in manifest.layers} == modes
    x = np.random.default_rng(8).standard_normal(manifest.input.shape).astype(np.float32)
    x.reshape(-1)[::9] = 0.0  # exact zeros: Sign(0) = 0 where the model says so
    expected = run_ort(model, {model.graph.input[0].name: x})[0]
    import tvm
    import tvm.runtime.vm

    vm = tvm.runtime.vm.VirtualMachine(tvm.runtime.load_module(str(tmp_path / "x86" / "module.so")), tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(x)).numpy()
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * scale)
    if got.ndim == 2:
        assert (got.argmax(axis=1) == expected.argmax(axis=1)).all()
    arm = api.compile(path, target="arm", board="rpi4", out=tmp_path / "arm")
    assert [layer["kernel"] for layer in arm.layers] and arm.target.family == "arm"
