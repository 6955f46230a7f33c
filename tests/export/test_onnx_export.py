import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from mptc.cli import main
from mptc.export.onnx_export import CHECK_SAMPLES, compare_logits, decisive_agreement, run_onnx
from tests.export.conftest import FAMILIES, METHODS


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("method", list(METHODS))
def test_exported_onnx_matches_pytorch(exported, family, method):
    model, config, dataset, report = exported(family, method)
    proto = onnx.load(report.path)
    onnx.checker.check_model(proto, full_check=True)
    assert proto.ir_version <= 10 and proto.opset_import[0].version >= 17
    x = dataset.test.x[: CHECK_SAMPLES if config.binary_act else 64]
    reference = model(x).detach().numpy()
    actual = run_onnx(proto, x.numpy())
    if config.binary_act:  # a pre-activation within rounding of 0 may flip a sign: the export's own limits
        compare_logits(reference, actual, "PyTorch and onnxruntime", binary_act=True)
        return
    np.testing.assert_allclose(actual, reference, rtol=1e-4, atol=1e-4 * np.abs(reference).max())
    assert decisive_agreement(reference, actual) == 1.0


def test_ties_do_not_count_as_disagreement():
    reference = np.array([[1.0, 1.0, 0.0], [0.0, 2.0, 1.0]])
    candidate = np.array([[1.0, 1.0 + 1e-9, 0.0], [0.0, 2.0, 1.0]])
    assert decisive_agreement(reference, candidate) == 1.0
    assert decisive_agreement(reference, np.array([[1.0, 0.0, 0.0], [3.0, 2.0, 1.0]])) == 0.0


@pytest.mark.parametrize("method", ["biprop", "biprop-1-1"])
def test_ternary_weights_and_sign_ops_are_explicit(exported, method):
    _, config, _, report = exported("conv4", method)
    proto = onnx.load(report.path)
    ops = [n.op_type for n in proto.graph.node]
    assert "BatchNormalization" in ops or not config.binary_act
    assert ("Where" in ops) == config.binary_act
    weights = [onnx.numpy_helper.to_array(i) for i in proto.graph.initializer if i.dims and len(i.dims) == 4]
    assert weights
    for w in weights:
        levels = np.unique(np.abs(w))
        assert len(levels) <= 2 and levels[0] == 0  # {0, alpha}: ternary
    assert not {"Sign", "Abs", "ReduceMean", "TopK"} & set(ops)


def test_metadata_records_method_sparsity_alpha_and_accuracy(exported):
    _, config, _, report = exported("mlp", "biprop")
    props = {p.key: p.value for p in onnx.load(report.path).metadata_props}
    assert props["mptc.method"] == "biprop" and props["mptc.seed"] == str(config.seed)
    layers = json.loads(props["mptc.layers"])
    assert all(abs(layer["sparsity"] - 0.7) < 1e-3 for layer in layers) and all(layer["alpha"] for layer in layers)
    assert "sign(0)=+1" in props["mptc.sign_convention"]
    assert 0.0 <= json.loads(props["mptc.accuracy"]) <= 1.0


def test_cli_export_and_qonnx(tiny_run, tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["export", str(tiny_run.run_dir), "-o", str(tmp_path / "m.onnx")])
    assert result.exit_code == 0, result.output
    assert "argmax agreement 100.0%" in result.output
    result = runner.invoke(main, ["export", str(tiny_run.run_dir), "-o", str(tmp_path / "q.onnx"), "--format", "qonnx"])
    assert result.exit_code == 0, result.output
    proto = onnx.load(tmp_path / "q.onnx")
    quant = [n for n in proto.graph.node if n.op_type == "Quant"]
    assert len(quant) == 3 and all(n.domain == "qonnx.custom_op.general" for n in quant)
    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in quant[0].attribute}
    assert attributes["signed"] == 1 and attributes["narrow"] == 1


def test_cli_export_of_missing_run(tmp_path):
    result = CliRunner().invoke(main, ["export", str(tmp_path / "none"), "-o", str(tmp_path / "m.onnx")])
    assert result.exit_code == 3 and "no ticket" in result.output and "Traceback" not in result.output


def test_export_does_not_import_the_passes():
    """Export comes before the passes: the maths both need lives in mptc.conventions."""
    code = (
        "import importlib, pkgutil, sys, mptc.export\n"
        "for m in pkgutil.walk_packages(mptc.export.__path__, 'mptc.export.'): importlib.import_module(m.name)\n"
        "assert not [m for m in sys.modules if m.startswith('mptc.passes')]"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
