"""`mptc profile --compare/--inputs/--save-outputs/--top-k`: models built here with onnx.helper (not the
zoo), compiled for this host by `mptc compile`, profiled beside onnxruntime."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from mptc.artifact import TensorInfo
from mptc.cli import main
from mptc.deploy.profile import compare_outputs, profile, read_inputs, top_classes
from mptc.errors import InputError
from mptc.passes.pipeline import optimize
from mptc.report.latency import interleaved_rounds, median_ratio
from tests.deploy.conftest import fresh_copy

BATCH = 2
PEERS = "onnxruntime,onnxruntime-int8"


def _conv_gemm(weights: tuple[np.ndarray, np.ndarray]) -> onnx.ModelProto:
    """Conv 3->8 (3x3, pad 1) -> Relu -> Flatten -> Gemm 512->10 on ``(BATCH, 3, 8, 8)``."""
    conv, dense = weights
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "conv.w"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c"], ["r"]),
            helper.make_node("Flatten", ["r"], ["f"], axis=1),
            helper.make_node("Gemm", ["f", "dense.w"], ["logits"], transB=1),
        ],
        "conv_gemm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [BATCH, 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [BATCH, 10])],
        [numpy_helper.from_array(conv, "conv.w"), numpy_helper.from_array(dense, "dense.w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    onnx.checker.check_model(model)
    return model


def ternary_model() -> onnx.ModelProto:
    """Weights in {-alpha, 0, +alpha} per layer: `mptc compile` packs both layers first."""
    rng = np.random.default_rng(0)
    return _conv_gemm(
        (
            rng.choice([-0.3, 0.0, 0.3], size=(8, 3, 3, 3)).astype(np.float32),
            rng.choice([-0.05, 0.0, 0.05], size=(10, 8 * 8 * 8)).astype(np.float32),
        )
    )


def fp32_model() -> onnx.ModelProto:
    rng = np.random.default_rng(1)
    return _conv_gemm(
        (
            rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3,
            rng.standard_normal((10, 8 * 8 * 8)).astype(np.float32) * 0.05,
        )
    )


def _run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def _compile(model: onnx.ModelProto, folder: Path) -> Path:
    onnx.save(model, folder / "model.onnx")
    result = _run("compile", folder / "model.onnx", "--target", "x86", "-o", folder / "out")
    assert result.exit_code == 0, result.output
    return folder / "out"


@pytest.fixture(scope="module")
def ternary_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _compile(ternary_model(), tmp_path_factory.mktemp("ternary"))


@pytest.fixture(scope="module")
def fp32_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _compile(fp32_model(), tmp_path_factory.mktemp("fp32"))


def _one_line_error(result, code: int, *fragments: str) -> None:
    assert result.exit_code == code, result.output
    assert result.output.startswith("mptc: error: ") and result.output.count("\n") == 1, result.output
    for fragment in fragments:
        assert fragment in result.output


@pytest.mark.parametrize("kind", ["ternary", "fp32"])
def test_compare_with_onnxruntime_end_to_end(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    out = fresh_copy(request.getfixturevalue(f"{kind}_out"), tmp_path / "out")
    result = _run("profile", out, "--compare", PEERS, "--repeat", "3", "--rounds", "2")
    assert result.exit_code == 0, result.output
    assert "speedup" in result.output and "onnxruntime-int8" in result.output and "note:" not in result.output
    section = json.loads((out / "profile.json").read_text())["compare"]
    assert section["rounds"] == 2 and len(section["mptc"]["round_ms"]) == 2
    assert set(section["peers"]) == {"onnxruntime", "onnxruntime-int8"}
    for peer in section["peers"].values():
        assert peer["ran_on"] == "this host" and len(peer["round_ms"]) == 2
        assert all(math.isfinite(v) and v > 0 for v in (peer["median_ms"], peer["speedup"], *peer["round_ms"]))
        assert 0.0 <= peer["argmax_agreement"] <= 1.0
    assert section["peers"]["onnxruntime"]["argmax_agreement"] == 1.0  # the same model in fp32
    unpacked = "ai.mptc layers as fp32 Conv/Gemm on the unpacked weights"
    packed = unpacked in section["peers"]["onnxruntime"]["description"]
    assert packed is (kind == "ternary")
    assert (unpacked in section["peers"]["onnxruntime-int8"]["description"]) is packed


def test_peers_run_at_the_module_thread_count(ternary_out: Path, tmp_path: Path, monkeypatch) -> None:
    """Each peer gets as many intra-op threads as TVM's pool runs the module with (a module pinned
    by TVM_NUM_THREADS=1 is compared with one-thread peers, not onnxruntime's every core), and the
    report says so."""
    import onnxruntime as ort

    from mptc.deploy import thread_pool

    seen: list[int] = []
    session = ort.InferenceSession

    def recording(model, options=None, **kwargs):
        seen.append(options.intra_op_num_threads)
        return session(model, options, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", recording)
    out = fresh_copy(ternary_out, tmp_path / "out")
    result = _run("profile", out, "--compare", "onnxruntime", "--repeat", "2", "--rounds", "1")
    assert result.exit_code == 0, result.output
    threads = thread_pool.threads()
    assert seen and set(seen) == {threads}
    assert f"at {threads} thread(s) as the module" in result.output


def test_inputs_checked_saved_and_ranked(ternary_out: Path, tmp_path: Path) -> None:
    out = fresh_copy(ternary_out, tmp_path / "out")
    x = np.random.default_rng(5).standard_normal((3 * BATCH, 3, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "x.npz", x)  # one array, unnamed: taken whatever its name
    saved = tmp_path / "outputs" / "y.npz"
    result = _run(
        "profile", out, "--inputs", tmp_path / "x.npz", "--save-outputs", saved, "--top-k", "2", "--repeat", "2"
    )
    assert result.exit_code == 0, result.output
    assert f"{3 * BATCH} sample(s) of {tmp_path / 'x.npz'} match onnxruntime" in result.output
    with np.load(saved) as arrays:
        assert list(arrays) == ["logits"]
        logits = arrays["logits"]
    assert logits.shape == (3 * BATCH, 10) and logits.dtype == np.float32
    report = json.loads((out / "profile.json").read_text())
    assert report["inputs"]["batches"] == 3 and report["inputs"]["outputs_match"]
    assert [[c["class"] for c in best] for best in report["top_k"]] == np.argsort(-logits, axis=1)[:, :2].tolist()
    assert result.output.count("top-2:") == 3 * BATCH


def test_inputs_named_as_the_model_input_among_others(ternary_out: Path, tmp_path: Path) -> None:
    x = np.zeros((BATCH, 3, 8, 8), np.float32)
    np.savez(tmp_path / "x.npz", x=x, labels=np.arange(BATCH))
    given = read_inputs(tmp_path / "x.npz", TensorInfo("x", [BATCH, 3, 8, 8], "float32"))
    assert given.array == "x" and len(given.batches) == 1 and given.samples == BATCH


@pytest.mark.parametrize(
    ("arrays", "says"),
    [
        ({"x": np.zeros((BATCH, 3, 8, 8), np.float64)}, "is float64, the module takes float32"),
        ({"x": np.zeros((BATCH + 1, 3, 8, 8), np.float32)}, f"give a whole multiple of {BATCH} sample(s)"),
        ({"x": np.zeros((BATCH, 3, 8), np.float32)}, "has shape [2, 3, 8]"),
        ({"a": np.zeros(1), "b": np.zeros(1)}, "name it 'x' (the model's input)"),
        ({"x": np.array([{"a": 1}], dtype=object)}, "cannot read array 'x'"),
    ],
)
def test_bad_inputs_are_one_line_exit_3(ternary_out: Path, tmp_path: Path, arrays: dict, says: str) -> None:
    out = fresh_copy(ternary_out, tmp_path / "out")
    np.savez(tmp_path / "x.npz", **arrays)
    _one_line_error(_run("profile", out, "--inputs", tmp_path / "x.npz"), 3, says)
    assert not (out / "profile.json").exists()


def test_missing_inputs_file_is_exit_3(ternary_out: Path, tmp_path: Path) -> None:
    _one_line_error(_run("profile", ternary_out, "--inputs", tmp_path / "none.npz"), 3, "cannot read")


def test_unknown_peer_is_a_usage_error(ternary_out: Path) -> None:
    result = _run("profile", ternary_out, "--compare", "onnxruntime,tflite")
    assert result.exit_code == 2 and "unknown peer 'tflite'" in result.output


def test_source_model_other_than_the_manifest_is_refused(ternary_out: Path, tmp_path: Path) -> None:
    out = fresh_copy(ternary_out, tmp_path / "out")
    onnx.save(fp32_model(), out / "source.onnx")
    _one_line_error(_run("profile", out, "--compare", "onnxruntime"), 3, "not the model the module was compiled from")


def test_folder_without_source_model_cannot_compare(mlp_host_out: Path) -> None:
    _one_line_error(_run("profile", mlp_host_out, "--compare", "onnxruntime"), 3, "source.onnx is missing")


def test_packed_model_without_function_bodies(tmp_path: Path) -> None:
    """The peers run the unpacked network, which needs no function body; the user's inputs are
    checked by onnx.reference, which needs none either."""
    packed = optimize(ternary_model())
    del packed.functions[:]
    out = _compile(packed, tmp_path)
    result = _run("profile", out, "--compare", "onnxruntime", "--repeat", "2", "--rounds", "1")
    assert result.exit_code == 0 and "argmax agrees on 100%" in result.output, result.output
    np.savez(tmp_path / "x.npz", x=np.ones((BATCH, 3, 8, 8), np.float32))
    report = profile(out, repeat=1, inputs=tmp_path / "x.npz")
    assert report["inputs"]["outputs_match"] and report["inputs"]["checked_against"].startswith("onnx.reference")


def test_rounds_reported_to_the_progress_callback(fp32_out: Path, tmp_path: Path) -> None:
    done: list[int] = []
    report = profile(
        fresh_copy(fp32_out, tmp_path / "out"), repeat=1, compare=["onnxruntime"], rounds=3, on_round=done.append
    )
    assert done == [0, 1, 2, 3] and len(report["compare"]["peers"]["onnxruntime"]["round_ms"]) == 3


def test_interleaved_rounds_alternate_the_sides() -> None:
    order: list[str] = []
    timers = {name: (lambda name=name: order.append(name) or float(len(order))) for name in ("a", "b")}
    samples = interleaved_rounds(timers, 3)
    assert order == ["a", "b"] * 3 and samples == {"a": [1.0, 3.0, 5.0], "b": [2.0, 4.0, 6.0]}
    assert median_ratio([2.0, 9.0, 4.0], [1.0, 3.0, 1.0]) == 3.0  # median of 2, 3, 4: not 15 / 5


def test_argmax_ignores_ties_of_the_expected_output() -> None:
    expected = np.array([[1.0, 1.0, 0.0], [0.0, 2.0, 3.0]])
    assert compare_outputs(expected + [[0.0, 1e-6, 0.0], [0.0, 0.0, 0.0]], expected)["argmax_match"]
    assert not compare_outputs(expected[:, ::-1].copy(), expected)["argmax_match"]


def test_top_classes_best_first() -> None:
    assert top_classes(np.array([[0.1, 0.7, 0.2]]), 2) == [[{"class": 1, "score": 0.7}, {"class": 2, "score": 0.2}]]
    assert len(top_classes(np.array([[0.1, 0.7, 0.2]]), 5)[0]) == 3


def test_read_inputs_rejects_garbage(tmp_path: Path) -> None:
    (tmp_path / "x.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="is not a .npz of arrays"):
        read_inputs(tmp_path / "x.npz", TensorInfo("x", [1, 4], "float32"))


@pytest.mark.emulated
def test_peers_run_on_this_host_beside_an_emulated_board(arm_ready: Path, tmp_path: Path) -> None:
    onnx.save(ternary_model(), tmp_path / "model.onnx")
    result = _run("compile", tmp_path / "model.onnx", "--target", "arm", "--board", "rpi4", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    result = _run(
        "profile", tmp_path / "out", "--emulate", "rpi4", "--compare", "onnxruntime", "--repeat", "2", "--rounds", "2"
    )
    assert result.exit_code == 0, result.output
    assert "onnxruntime ran on this host, not the board" in result.output and "EMULATED" in result.output
    section = json.loads((tmp_path / "out" / "profile.json").read_text())["compare"]
    assert "device's own timer" in section["method"] and section["note"].endswith("(and the board is emulated)")
    assert math.isfinite(section["peers"]["onnxruntime"]["speedup"])
