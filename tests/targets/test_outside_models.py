"""Models from the outside world: forms the packed kernels do not compile yet stay on the fp32 path,
so ``mptc optimize`` then ``mptc compile`` still succeeds and matches onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx

from mptc import api
from mptc.deploy.profile import profile
from mptc.passes.pipeline import optimize
from tests.passes.mptc_graphs import model_from_text, run_ort, ternary
from tests.targets.harness import compile_x86, relative_error, run, sample

DEPTHWISE_BLOCK = """<ir_version: 10, opset_import: ["" : 19]>
g (float[1,8,10,10] x) => (float[n,o,h,w] y) {
  d = Conv <group = 8, pads = [1, 1, 1, 1]> (x, dw, db)
  r = Relu (d)
  y = Conv (r, pw, pb)
}"""


def depthwise_block(rng: np.random.Generator) -> onnx.ModelProto:
    return model_from_text(
        DEPTHWISE_BLOCK,
        dw=ternary(rng, (8, 1, 3, 3)),
        db=rng.standard_normal(8).astype(np.float32),
        pw=ternary(rng, (16, 8, 1, 1)),
        pb=rng.standard_normal(16).astype(np.float32),
    )


def test_depthwise_conv_stays_fp32_and_the_block_compiles(rng):
    """A MobileNet-style block (ternary depthwise 3x3, then ternary pointwise 1x1): only the
    pointwise conv is packed, the depthwise one stays an fp32 Conv with its reason recorded."""
    model = depthwise_block(rng)
    skipped: list[str] = []
    packed = optimize(model, on_skip=skipped.append)
    assert [n.op_type for n in packed.graph.node] == ["Conv", "Relu", "BinaryConv"]
    assert skipped == [
        "PackTernaryWeightsPass left d (Conv): grouped convolution (group=8): "
        "no packed kernel compiles it yet; it stays an fp32 Conv"
    ]
    vm, _ = compile_x86(packed)
    x = sample(model)
    assert relative_error(run(vm, x), run_ort(model, {"x": x})[0]) <= 1e-5


def test_mptc_compile_of_the_unpacked_block_succeeds(rng, tmp_path):
    """``mptc compile`` (the API behind it) packs what it can and compiles the rest as fp32."""
    path = tmp_path / "block.onnx"
    onnx.save(depthwise_block(rng), path)
    manifest = api.compile(path, target="x86", out=tmp_path / "out")
    assert [layer["op_type"] for layer in manifest.layers] == ["BinaryConv"]
    measured = profile(tmp_path / "out", repeat=1)
    assert measured["outputs_match"] and measured["max_rel_error"] <= 1e-4, measured


def test_a_model_whose_only_ternary_layers_are_grouped_compiles_as_fp32(rng, tmp_path):
    """Nothing packs (every ternary conv is grouped): ``mptc compile`` compiles the model as it is."""
    path = tmp_path / "depthwise.onnx"
    onnx.save(
        model_from_text(
            """<ir_version: 10, opset_import: ["" : 19]>
            g (float[1,8,10,10] x) => (float[n,o,h,w] y) {
              y = Conv <group = 8, pads = [1, 1, 1, 1]> (x, dw, db)
            }""",
            dw=ternary(rng, (8, 1, 3, 3)),
            db=rng.standard_normal(8).astype(np.float32),
        ),
        path,
    )
    manifest = api.compile(path, target="x86", out=tmp_path / "out")
    assert manifest.layers == [] and not (tmp_path / "out" / "packed.onnx").exists()
    assert profile(tmp_path / "out", repeat=1)["outputs_match"]
