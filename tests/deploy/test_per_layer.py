"""`mptc profile --per-layer`: the module's kernels beside onnxruntime's profiler, matched per layer
on a model compiled here (a packed conv and dense); no test asserts a speed."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import onnx
import pytest
from click.testing import CliRunner

from mptc.cli import main
from mptc.deploy import per_layer
from mptc.deploy.profile import PROFILE, profile
from mptc.errors import DeviceError
from tests.deploy.conftest import fresh_copy
from tests.deploy.test_compare import ternary_model


def _run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def packed_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Conv ``c`` (a block-sparse kernel, ``mptc_0_c``) -> Relu -> Flatten -> dense ``logits`` (fp32 glue)."""
    folder = tmp_path_factory.mktemp("per-layer")
    onnx.save(ternary_model(), folder / "model.onnx")
    result = _run("compile", folder / "model.onnx", "--target", "x86", "-o", folder / "out")
    assert result.exit_code == 0, result.output
    return folder / "out"


def _one_line_error(result: Any, code: int, fragment: str) -> None:
    assert result.exit_code == code, result.output
    assert result.output.startswith("mptc: error: ") and result.output.count("\n") == 1, result.output
    assert fragment in result.output


def test_rows_for_each_layer_with_positive_times(packed_out: Path, tmp_path: Path) -> None:
    out = fresh_copy(packed_out, tmp_path / "out")
    report = profile(out, repeat=2, rounds=2, per_layer=True)
    assert json.loads((out / PROFILE).read_text())["per_layer"] == report["per_layer"]
    section = report["per_layer"]
    rows = {row["name"]: row for row in section["rows"]}
    manifest = json.loads((out / "manifest.json").read_text())
    assert {layer["name"] for layer in manifest["layers"]} == {"c", "logits"}
    for layer in manifest["layers"]:  # every ai.mptc layer has a row, matched when it has a kernel of its own
        row, own = rows[layer["name"]], [k for k in section["kernels"] if k["layer"] == layer["name"]]
        assert row["onnxruntime_us"] > 0 and row["matched"] is bool(own)
        if own:
            assert row["kind"] == "layer" and row["mptc_us"] > 0
            assert row["mptc"].startswith(f"mptc_{manifest['layers'].index(layer)}_{layer['name']}")
            assert row["speedup"] == row["onnxruntime_us"] / row["mptc_us"]
        else:  # compiled into TVM's glue, which names no layer
            assert row["kind"] == "layer, onnxruntime only" and row["mptc_us"] is None and row["speedup"] is None
    conv = rows["c"]  # its own kernel, and onnxruntime's fp32 Conv (fused with the ReLU after it)
    assert conv["matched"] and "Conv" in conv["onnxruntime"]
    glue = [row for row in section["rows"] if row["kind"] == "unmatched mptc glue"]
    assert glue and all(row["mptc_us"] > 0 and row["onnxruntime_us"] is None for row in glue)
    assert section["matched"] == sum(row["matched"] for row in section["rows"]) >= 1
    for kernel in section["kernels"]:
        assert kernel["us"] >= 0 and (kernel["layer"] == "c") == kernel["name"].startswith("mptc_0_c")
    times = [max(row["mptc_us"] or 0.0, row["onnxruntime_us"] or 0.0) for row in section["rows"]]
    assert times == sorted(times, reverse=True)
    assert all(math.isfinite(v) and v > 0 for v in section["totals"].values())
    assert section["threads"] >= 1 and f"at {section['threads']} thread(s)" in section["method"]


@pytest.mark.parametrize(
    ("symbol", "layers", "layer"),
    [
        ("mptc_0_c1", ["c"], "c"),  # TVM appended a digit to keep the symbol unique
        ("mptc_1_node_conv2d_11", ["node_conv2d", "node_conv2d_1"], "node_conv2d_1"),
        ("mptc_0_node_conv2d1", ["node_conv2d", "node_conv2d_1"], "node_conv2d"),
        ("mptc_2_pool_unsigned", ["pool.unsigned"], "pool.unsigned"),  # spelt as the compiler spells it
        ("mptc_3_a_b", ["a.b", "a/b"], None),  # two nodes fit: no guess
        ("mptc_0_x", ["y"], None),
        ("fused_conv2d_add_relu", ["conv2d"], None),  # glue names no node
    ],
)
def test_kernels_are_matched_by_name_only(symbol: str, layers: list[str], layer: str | None) -> None:
    assert per_layer.kernel_layer(symbol, layers) == layer


def test_the_compilers_record_decides_between_names_that_fit() -> None:
    """``node_conv2d_18`` + ``1`` and ``node_conv2d_1`` + ``81`` both fit ``node_conv2d_181``, and
    layer 1's kernel ``node_conv2d_11`` is also layer 11's name: the manifest's layer ``i`` says
    which; a record that names neither decides nothing."""
    layers = [f"node_conv2d_{i}" for i in range(20)]
    assert per_layer.kernel_layer("mptc_18_node_conv2d_181", layers) is None
    assert per_layer.kernel_layer("mptc_18_node_conv2d_181", layers, layers[1:] + ["x"]) is None
    assert per_layer.kernel_layer("mptc_18_node_conv2d_181", layers, layers) == "node_conv2d_18"
    assert per_layer.kernel_layer("mptc_1_node_conv2d_11", layers, layers) == "node_conv2d_1"


def test_unpacked_nodes_are_named_after_their_layer() -> None:
    from mptc.passes.pipeline import optimize

    named, owners = per_layer.named_for_profiling(optimize(ternary_model()))
    assert not named.functions and all(node.domain != "ai.mptc" for node in named.graph.node)
    layers = {owners.of(node.name) for node in named.graph.node}
    assert {"c", "logits"} <= layers
    assert owners.of("Conv_7") is None and owners.of("c|sign") == "c" and owners.of("x|sign") is None
    assert owners.of("r_nchwc") == "c"  # onnxruntime's Conv fused with the ReLU after it, named after its output


def test_cli_prints_the_table(packed_out: Path, tmp_path: Path) -> None:
    out = fresh_copy(packed_out, tmp_path / "out")
    result = _run("profile", out, "--per-layer", "--repeat", "2", "--rounds", "2")
    assert result.exit_code == 0, result.output
    assert "per layer:" in result.output and "rows matched by layer name" in result.output
    lines = [line.split() for line in result.output.splitlines()]
    assert any(words[:3] == ["c", "matched", "mptc_0_c1"] for words in lines)
    # TVM's glue, led by its output shape
    glue = [words for words in lines if len(words) > 2 and words[1].startswith("fused_") and words[2] == "unmatched"]
    assert glue and all(re.fullmatch(r"\d+(x\d+)+", words[0]) for words in glue)
    assert "total of the rows" in result.output


def test_not_over_a_device_connection(packed_out: Path) -> None:
    _one_line_error(
        _run("profile", packed_out, "--per-layer", "--emulate", "rpi4"), 4, "times layers on this host only"
    )


def test_folder_without_source_model(mlp_host_out: Path) -> None:
    _one_line_error(_run("profile", mlp_host_out, "--per-layer"), 3, "source.onnx is missing")


def test_a_timer_that_gives_nan_fails_and_keeps_the_earlier_report(
    packed_out: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = fresh_copy(packed_out, tmp_path / "out")
    (out / PROFILE).write_text('{"stale": "from an earlier run"}')

    class Broken:
        def time_evaluator(self, *args: Any, **kwargs: Any) -> Any:
            return lambda *call_args: type("Result", (), {"mean": float("nan")})()

    monkeypatch.setattr(per_layer, "_implementing", lambda lib, symbol: Broken())
    with pytest.raises(DeviceError, match="not a measurement"):
        profile(out, repeat=1, rounds=1, per_layer=True)
    _one_line_error(_run("profile", out, "--per-layer", "--repeat", "1", "--rounds", "1"), 6, "not a measurement")
    assert (out / PROFILE).read_text() == '{"stale": "from an earlier run"}'
