"""Wrong results reported as success: numeric checks that NaN passed, and reused results that
were not for what was asked.

* A ticket whose BatchNorm statistics make its logits NaN or Inf (a ``running_var`` below zero
  takes a square root of a negative number) was exported with "max abs diff nan" and exit 0:
  ``diff > tol`` is False for NaN. Such a ticket is refused by ``mptc export`` and ``mptc eval``
  with exit 5 and a message that says NaN or Inf; one whose logits stay finite is exported, and
  its ONNX model's logits are finite.
* A packed model whose own output on the reference sample is Inf is not compiled (exit 5).
* ``mptc.verify``, the checks every stage uses, fails on NaN and Inf wherever they are.
* A sweep point is reused only for the settings it was computed with (``mptc.report.point``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from onnx import numpy_helper
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from mptc.config import TrainConfig
from mptc.errors import VerificationError
from mptc.export.onnx_export import run_onnx
from mptc.pipeline import DeviceOptions
from mptc.report import point
from mptc.train.config import resolve
from mptc.verify import max_abs_diff, nonfinite, require_finite, within
from tests.robustness.harness import FUZZ, assert_refused, invoke, record

STATISTICS = ("running_var", "running_mean")
BAD_VALUES = {
    "negative": st.floats(-1e6, -1e-3),
    "nan": st.just(math.nan),
    "inf": st.just(math.inf),
    "-inf": st.just(-math.inf),
    "huge": st.floats(1e30, 3e38),
}


def with_statistics(ticket: bytes, path, changes: dict[str, tuple[list[int], float]]) -> None:
    """The ticket's bytes, with ``changes[name] = (channels, value)`` written into BN statistics."""
    source = path.with_suffix(".orig")
    source.write_bytes(ticket)
    with safe_open(str(source), "np") as handle:
        metadata = handle.metadata()
    tensors = load_file(str(source))
    for name, (channels, value) in changes.items():
        tensors[name] = tensors[name].copy()
        tensors[name][channels] = value
    save_file(tensors, str(path), metadata=metadata)
    source.unlink()


def test_non_finite_tickets_are_not_exported_as_verified(artifacts, tmp_path):
    ticket = (artifacts.run / "ticket.safetensors").read_bytes()
    names = [name for name in load_file(str(artifacts.run / "ticket.safetensors")) if name.endswith(STATISTICS)]
    run, out = tmp_path / "run", tmp_path / "model.onnx"
    shutil.copytree(artifacts.run, run)

    @settings(FUZZ, max_examples=30)
    @given(data=st.data())
    def check(data) -> None:
        chosen = data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=2, unique=True))
        changes = {}
        for name in chosen:
            channels = data.draw(st.lists(st.integers(0, 127), min_size=1, max_size=8, unique=True))
            kind = data.draw(st.sampled_from(sorted(BAD_VALUES)))
            changes[name] = (channels, data.draw(BAD_VALUES[kind]))
        with_statistics(ticket, run / "ticket.safetensors", changes)
        out.unlink(missing_ok=True)
        record("export", (run / "ticket.safetensors").read_bytes())
        result = invoke(["export", run, "-o", out])
        if result.exit_code == 0:  # statistics that leave the logits finite (a huge variance)
            x = np.random.default_rng(0).standard_normal((16, *onnx_input_shape(out))).astype(np.float32)
            assert np.isfinite(run_onnx(onnx.load(out), x)).all(), "exported a model whose logits are not finite"
            return
        assert_refused(result, out, codes=frozenset({3, 5}))
        if result.exit_code == 5:
            assert "NaN or Inf" in result.stderr
            # `mptc eval` printed the accuracy of such a ticket (argmax of NaN is a class) with exit 0
            evaluated = invoke(["eval", run])
            assert_refused(evaluated, codes=frozenset({5}))
            assert "NaN or Inf" in evaluated.stderr

    check()


def onnx_input_shape(path) -> list[int]:
    return [d.dim_value for d in onnx.load(path).graph.input[0].type.tensor_type.shape.dim][1:]


def test_negative_running_var_is_a_verification_failure(artifacts, tmp_path):
    """The case that was exported with exit 0: every variance of the first BatchNorm below zero."""
    run, out = tmp_path / "run", tmp_path / "model.onnx"
    shutil.copytree(artifacts.run, run)
    ticket = run / "ticket.safetensors"
    name = next(n for n in load_file(str(ticket)) if n.endswith("running_var"))
    with_statistics(ticket.read_bytes(), ticket, {name: (list(range(128)), -1.0)})
    record("export", ticket.read_bytes())
    result = invoke(["export", run, "-o", out])
    assert_refused(result, out, codes=frozenset({5}))
    assert "NaN" in result.stderr.splitlines()[-1]


@pytest.mark.parametrize("value", [3e38, math.inf])
def test_compile_refuses_a_model_whose_reference_output_is_not_finite(value, artifacts, tmp_path):
    """A finite but huge ``scale`` overflows to Inf in the output (an infinite one is refused as input)."""
    model = onnx.load(artifacts.packed)
    last = [node for node in model.graph.node if node.op_type == "BinaryDense"][-1]
    tensor = next(t for t in model.graph.initializer if t.name == last.input[3])
    tensor.CopyFrom(
        numpy_helper.from_array(np.full(numpy_helper.to_array(tensor).shape, value, np.float32), tensor.name)
    )
    path, out = tmp_path / "huge.onnx", tmp_path / "module"
    path.write_bytes(model.SerializeToString())
    record("compile", path.read_bytes())
    result = invoke(["compile", path, "--target", "x86", "-o", out])
    assert_refused(result, out, codes=frozenset({5} if math.isfinite(value) else {3}))
    assert "NaN or Inf" in result.stderr


finite = st.floats(-1e6, 1e6, width=32)


@settings(FUZZ, max_examples=200)
@given(
    reference=hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=2, max_side=6), elements=finite),
    spoil=st.sampled_from([math.nan, math.inf, -math.inf]),
    where=st.integers(0, 2**16),
    which=st.sampled_from(["reference", "candidate"]),
)
def test_verify_fails_on_any_nan_or_inf(reference, spoil, where, which):
    """Whatever the shape and wherever the NaN or Inf, no check of ``mptc.verify`` passes it."""
    candidate = reference.copy()
    spoiled = reference if which == "reference" else candidate
    spoiled.reshape(-1)[where % spoiled.size] = spoil
    assert nonfinite(spoiled) is not None
    with pytest.raises(VerificationError, match="NaN or Inf"):
        require_finite(spoiled, "logits")
    assert not within(max_abs_diff(reference, candidate), 1e30)
    assert not within(np.abs(reference - candidate), 1e30).all()


@settings(FUZZ, max_examples=100)
@given(reference=hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=2, max_side=6), elements=finite))
def test_verify_passes_finite_equal_outputs(reference):
    assert nonfinite(reference) is None
    require_finite(reference, "logits")
    assert within(max_abs_diff(reference, reference.copy()), 0.0)


BASE = TrainConfig(model="mlp", method="biprop", sparsity=0.5, width=0.25, epochs=1, seed=1)
CHANGES = {
    "binary_act": st.just(True),
    "width": st.sampled_from([0.125, 0.5, 1.0]),
    "epochs": st.integers(2, 5),
    "seed": st.integers(2, 100),
    "sparsity": st.sampled_from([0.3, 0.7, 0.9]),
    "method": st.just("edge-popup"),
    "lr": st.sampled_from([0.5, 1e-4]),
    "batch_size": st.sampled_from([16, 128]),
    "dataset": st.sampled_from(["synthetic", "synthetic:3x8x8"]),
}
DEVICE_CHANGES = {
    "target": st.sampled_from(["arm", "cuda"]),
    "board": st.sampled_from(["rpi4", "rpi5"]),
    "emulate": st.sampled_from(["rpi4"]),
    "rpc": st.sampled_from(["127.0.0.1:9090"]),
    "repeat": st.integers(1, 29),
}


class Recomputed(Exception):
    """Raised by the stand-in pipeline: the point was computed again, not reused."""


def finished_point(folder, config: TrainConfig, device: DeviceOptions) -> dict:
    """A finished point folder for ``config`` on ``device``, as the sweep leaves it."""
    (folder / "run").mkdir(parents=True)
    (folder / "run" / "config.json").write_text(resolve(config).dumps())
    (folder / "run" / "ticket.safetensors").write_bytes(b"ticket")
    stored = {"sparsity": config.sparsity, "inputs": point.point_inputs(config, device)}
    (folder / point.POINT_FILE).write_text(json.dumps(stored))
    return stored


def test_sweep_points_are_reused_only_for_the_same_settings(tmp_path_factory, monkeypatch):
    """A point folder computed with other settings (a sweep rerun into a finished folder with
    ``--binary-act --width 0.25 --epochs 1 --seed 7``) used to be reused as it was."""

    def pipeline(*_args, **_kwargs):
        raise Recomputed

    monkeypatch.setattr(point, "run_pipeline", pipeline)

    @settings(FUZZ, max_examples=60)
    @given(
        config_changes=st.dictionaries(st.sampled_from(sorted(CHANGES)), st.none(), max_size=3),
        device_changes=st.dictionaries(st.sampled_from(sorted(DEVICE_CHANGES)), st.none(), max_size=2),
        data=st.data(),
    )
    def check(config_changes, device_changes, data) -> None:
        config = dataclasses.replace(BASE, **{k: data.draw(CHANGES[k]) for k in config_changes})
        device = dataclasses.replace(DeviceOptions(), **{k: data.draw(DEVICE_CHANGES[k]) for k in device_changes})
        folder = tmp_path_factory.mktemp("point")
        stored = finished_point(folder, BASE, DeviceOptions())
        record("sweep point", json.dumps(point.point_inputs(config, device), sort_keys=True))
        if (config, device) == (BASE, DeviceOptions()):
            assert point.run_point(config, folder, device) == stored
            return
        with pytest.raises(Recomputed):
            point.run_point(config, folder, device)
        assert not (folder / point.POINT_FILE).exists(), "the point of other settings is still there"
        assert (folder / "run").exists() == (resolve(config) == resolve(BASE)), "training of other settings kept"

    check()


@pytest.mark.parametrize("content", [b"", b"{", b"[]", b'{"inputs": 3}', b"\xff" * 10])
def test_unreadable_point_records_are_computed_again(content, tmp_path, monkeypatch):
    def pipeline(*_args, **_kwargs):
        raise Recomputed

    monkeypatch.setattr(point, "run_pipeline", pipeline)
    finished_point(tmp_path, BASE, DeviceOptions())
    (tmp_path / point.POINT_FILE).write_bytes(content)
    record("sweep point", content)
    with pytest.raises(Recomputed):
        point.run_point(BASE, tmp_path, DeviceOptions())


@pytest.mark.slow
def test_sweep_rerun_with_other_settings_recomputes(tmp_path):
    """End to end, as a user runs it (one process per command: a process that loaded a module
    keeps it, whatever is later written at its path): the rerun's point has the rerun's settings."""
    out = tmp_path / "sweep"
    common = [sys.executable, "-m", "mptc.cli", "sweep", "--sparsity", "0.5", "--repeat", "1", "-o", str(out)]
    for settings_ in (
        ["--width", "0.5", "--epochs", "1"],
        ["--binary-act", "--width", "0.25", "--epochs", "1", "--seed", "7"],
    ):
        done = subprocess.run([*common, *settings_], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    report = json.loads((out / "report.json").read_text())
    (recorded,) = report["points"]
    assert recorded["binary_act"] and recorded["inputs"]["config"]["seed"] == 7
    assert recorded["inputs"]["config"]["width"] == 0.25
    assert json.loads((out / "sparsity-0.5" / "run" / "config.json").read_text())["seed"] == 7
