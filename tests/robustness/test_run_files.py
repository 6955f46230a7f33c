"""Damaged run directories: tickets through ``mptc eval`` and ``mptc export``, checkpoints and
configs through ``mptc train --resume``, and the library readers beneath them.

A checkpoint or ticket that still reads (a flipped bit in a tensor's data) may be used; anything
else is refused cleanly, and a refused resume leaves the run directory as it found it.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mptc.errors import InputError
from mptc.ticket import load_ticket
from mptc.train.checkpoint import load_checkpoint
from tests.robustness.harness import FUZZ, assert_refused, damage_bytes, invoke, record

# Damaged bytes and the legacy pickles below make torch's reader warn about their pickle protocol.
pytestmark = pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")

RESUME = ["train", "--width", "0.25", "--epochs", "1", "--seed", "1", "--resume", "--out"]
"""Resumes the session's finished run (see ``artifacts``) with its own settings."""


@st.composite
def damage(draw) -> tuple[str, tuple[int, ...]]:
    """``(how, numbers)``: a truncation, 1-16 flipped bits or random bytes (see :func:`damaged`)."""
    how = draw(st.sampled_from(("truncate", "flip", "random")))
    count = {"truncate": 1, "flip": draw(st.integers(1, 16)), "random": 2}[how]
    return how, tuple(draw(st.integers(0, 2**31)) for _ in range(count))


def damaged(data: bytes, spec: tuple[str, tuple[int, ...]]) -> bytes:
    return damage_bytes(data, *spec)


def snapshot(folder) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()}


def test_damaged_tickets_through_eval(artifacts, tmp_path):
    ticket = (artifacts.run / "ticket.safetensors").read_bytes()
    run = tmp_path / "run"
    run.mkdir()

    @settings(FUZZ, max_examples=200)
    @given(spec=damage())
    def check(spec) -> None:
        data = damaged(ticket, spec)
        (run / "ticket.safetensors").write_bytes(data)
        record("eval", data)
        result = invoke(["eval", run])
        if result.exit_code != 0:
            assert_refused(result)

    check()


def test_damaged_tickets_through_export(artifacts, tmp_path):
    """Only tickets the reader refuses: a readable one would be exported (seconds each)."""
    ticket = (artifacts.run / "ticket.safetensors").read_bytes()
    run, out = tmp_path / "run", tmp_path / "model.onnx"
    run.mkdir()

    @settings(FUZZ, max_examples=25)
    @given(spec=damage())
    def check(spec) -> None:
        data = damaged(ticket, spec)
        (run / "ticket.safetensors").write_bytes(data)
        try:
            load_ticket(run / "ticket.safetensors")
        except InputError:
            pass
        else:
            assume(False)
        record("export", data)
        assert_refused(invoke(["export", run, "-o", out]), out)

    check()


def test_damaged_checkpoints_through_resume(copy_run):
    run = copy_run()
    checkpoint = (run / "checkpoint.pt").read_bytes()

    @settings(FUZZ, max_examples=120)
    @given(spec=damage())
    def check(spec) -> None:
        data = damaged(checkpoint, spec)
        (run / "checkpoint.pt").write_bytes(data)
        before = snapshot(run)
        record("resume checkpoint", data)
        result = invoke([*RESUME, run])
        if result.exit_code != 0:
            assert_refused(result)
            assert snapshot(run) == before, "a refused resume changed the run directory"

    check()


def test_library_checkpoint_reader_raises_only_input_error(tmp_path):
    path = tmp_path / "checkpoint.pt"

    @settings(FUZZ, max_examples=150)
    @given(data=st.binary(max_size=1024))
    def check(data: bytes) -> None:
        path.write_bytes(data)
        record("load_checkpoint", data)
        try:
            load_checkpoint(path)
        except InputError:
            pass

    check()


class Payload:
    """Pickled code: unpickling it would call ``os.system``."""

    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED",))


def torch_saved(state) -> bytes:
    import io

    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def checkpoint_cases(good: dict) -> dict[str, bytes]:
    """Checkpoints that are well-formed files but wrong inside (or carry code)."""
    model = good["model"]
    renamed = {f"x.{key}": value for key, value in model.items()}
    reshaped = {key: value.reshape(-1)[:1] if value.ndim else value for key, value in model.items()}
    return {
        "code in the state": torch_saved({**good, "history": [Payload()]}),
        "code as the whole file": pickle.dumps(Payload()),
        "code in a legacy pickle": pickle.dumps({"epoch": 1, "model": Payload()}, protocol=2),
        "a plain pickle of a dict": pickle.dumps({"epoch": 1}),
        "a list": torch_saved([1, 2, 3]),
        "no epoch": torch_saved({key: value for key, value in good.items() if key != "epoch"}),
        "no model": torch_saved({key: value for key, value in good.items() if key != "model"}),
        "no optimizer": torch_saved({key: value for key, value in good.items() if key != "optimizer"}),
        "no scheduler": torch_saved({key: value for key, value in good.items() if key != "scheduler"}),
        "no history": torch_saved({key: value for key, value in good.items() if key != "history"}),
        "another model's tensors": torch_saved({**good, "model": renamed}),
        "tensors of the wrong shape": torch_saved({**good, "model": reshaped}),
        "a model that is a list": torch_saved({**good, "model": [1, 2]}),
        "an optimizer that is a string": torch_saved({**good, "optimizer": "adam"}),
        "an empty optimizer state": torch_saved({**good, "optimizer": {}}),
        "a scheduler that is a number": torch_saved({**good, "scheduler": 3}),
        "history that is a number": torch_saved({**good, "history": 7}),
        "epoch as text": torch_saved({**good, "epoch": "one"}),
        "a negative epoch": torch_saved({**good, "epoch": -3}),
        "an epoch past the end": torch_saved({**good, "epoch": 10**6}),
        "an empty file": b"",
        "a zip of nothing": b"PK\x05\x06" + bytes(18),
    }


def test_wrong_checkpoints_through_resume(artifacts, copy_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where Payload would leave its mark
    good = load_checkpoint(artifacts.run / "checkpoint.pt")
    for name, data in checkpoint_cases(good).items():
        run = copy_run(name.replace(" ", "-"))
        (run / "checkpoint.pt").write_bytes(data)
        before = snapshot(run)
        record("resume checkpoint", data)
        result = invoke([*RESUME, run])
        assert result.exit_code != 0 or name.startswith("a negative"), f"{name}: accepted"
        if result.exit_code != 0:
            assert_refused(result)
            assert snapshot(run) == before, f"{name}: a refused resume changed the run directory"
    assert not (tmp_path / "PWNED").exists(), "a checkpoint's pickled code was run"


def test_pickled_code_is_refused_by_name(artifacts, copy_run):
    run = copy_run()
    (run / "checkpoint.pt").write_bytes(
        torch_saved({**load_checkpoint(artifacts.run / "checkpoint.pt"), "history": [Payload()]})
    )
    record("resume checkpoint", "pickled code, by name")
    result = invoke([*RESUME, run])
    assert_refused(result, codes=frozenset({3}))
    assert "refusing to unpickle" in result.stderr


def config_cases(good: dict) -> dict[str, bytes]:
    text = {
        "not JSON": "{ not json",
        "a list": "[]",
        "null": "null",
        "an unknown field": json.dumps({**good, "colour": "blue"}),
        "a field missing": json.dumps({key: value for key, value in good.items() if key != "width"}),
        "a wrong type": json.dumps({**good, "sparsity": "half"}),
        "an out-of-range value": json.dumps({**good, "sparsity": 7.0}),
        "a null width": json.dumps({**good, "width": None}),
        "an unknown model": json.dumps({**good, "model": "alexnet"}),
        "empty": "",
    }
    return {**{name: value.encode() for name, value in text.items()}, "not UTF-8": b"\xff\xfe{\x00"}


def test_wrong_configs_through_resume(artifacts, copy_run):
    good = json.loads((artifacts.run / "config.json").read_text())
    for name, data in config_cases(good).items():
        run = copy_run(name.replace(" ", "-"))
        (run / "config.json").write_bytes(data)
        before = snapshot(run)
        record("resume config", data)
        result = invoke([*RESUME, run])
        assert_refused(result)
        assert snapshot(run) == before, f"{name}: a refused resume changed the run directory"


NOT_A_RUN = ["file missing", "file is a folder", "run is a file", "no such run"]


def not_a_run(what: str, file: str, copy_run, tmp_path) -> Path:
    """A run directory whose ``file`` is missing or a folder, a plain file, or nothing at all."""
    run = copy_run()
    if what in ("file missing", "file is a folder"):
        (run / file).unlink()
        if what == "file is a folder":
            (run / file).mkdir()
        return run
    if what == "run is a file":
        (tmp_path / "file").write_text("")
        return tmp_path / "file"
    return tmp_path / "none"


@pytest.mark.parametrize("what", NOT_A_RUN)
def test_resume_of_what_is_not_a_run(what, copy_run, tmp_path):
    run = not_a_run(what, "config.json", copy_run, tmp_path)
    record("resume", what)
    assert_refused(invoke([*RESUME, run]))


@pytest.mark.parametrize("what", NOT_A_RUN)
@pytest.mark.parametrize("command", ["eval", "export"])
def test_commands_on_what_is_not_a_run(command, what, copy_run, tmp_path):
    run = not_a_run(what, "ticket.safetensors", copy_run, tmp_path)
    out = tmp_path / "model.onnx"
    record(command, what)
    assert_refused(invoke([command, run, *(["-o", out] if command == "export" else [])]), out)


@pytest.mark.parametrize(
    "dataset",
    [
        "synthetic:3x8x8",
        "synthetic:1x8x8",
        "synthetic:64",
        "cifar10:/nowhere",
        "imagefolder:/nowhere",
        "nonsense",
        "synthetic:0x1",
        "synthetic:ax2",
    ],
)
def test_eval_on_data_of_another_shape(dataset, artifacts):
    """Mismatched input shapes at run time: a ticket evaluated on data it cannot take."""
    record("eval --dataset", dataset)
    result = invoke(["eval", artifacts.run, "--dataset", dataset])
    if result.exit_code != 0:
        assert_refused(result)
