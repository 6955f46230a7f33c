"""Outputs that cannot be written (a file where a folder must be, a folder where a file must be,
a read-only or full disk) and option values mptc does not know (targets, boards, devices).

Running as root, permissions do not stop a write, so unwritable places are made from the file
system itself: a path under a regular file, a read-only mount and a 64 KiB tmpfs.
"""

from __future__ import annotations

import math
import subprocess

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mptc.boards import BOARDS, TARGETS
from mptc.deploy.artifact import load_compiled
from mptc.errors import InputError
from tests.robustness.harness import FUZZ, assert_refused, invoke, record


def commands(artifacts, out) -> dict[str, list]:
    """Every command that writes ``out``, fed a valid input."""
    return {
        "optimize": ["optimize", artifacts.model, "-o", out],
        "export": ["export", artifacts.run, "-o", out],
        "train": ["train", "--width", "0.25", "--epochs", "1", "--out", out],
        "compile": ["compile", artifacts.packed, "--target", "x86", "-o", out],
    }


def assert_no_complete_folder(command: str, out) -> None:
    """A folder output (train, compile) that failed holds nothing its readers take for finished."""
    if command == "train" and out.is_dir():
        assert not any((out / name).is_file() for name in ("checkpoint.pt", "ticket.safetensors", "metrics.json"))
        assert not list(out.glob(".*.tmp"))
    if command == "compile" and out.is_dir():
        with pytest.raises(InputError):
            load_compiled(out)
        assert not list(out.glob(".*.tmp"))


FOLDER_OUTPUTS = ("train", "compile")


@pytest.mark.parametrize("command", ["optimize", "export", "train", "compile"])
@pytest.mark.parametrize("where", ["under a file", "an existing folder", "a read-only disk"])
def test_unwritable_outputs(command, where, artifacts, tmp_path):
    if where == "under a file":
        (tmp_path / "a-file").write_text("")
        out = tmp_path / "a-file" / "out"
    elif where == "an existing folder":
        out = tmp_path / "folder"
        (out / "ticket.safetensors").mkdir(parents=True)  # folders where train and compile
        (out / "module.so").mkdir()  # write their main files
    else:
        read_only = tmp_path / "ro"
        read_only.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(read_only)], capture_output=True, text=True
        )
        if done.returncode != 0:
            pytest.skip(f"a read-only disk is a read-only tmpfs, and mounting one needs root: {done.stderr.strip()}")
        out = read_only / "out"
    try:
        record(command, where)
        result = invoke(commands(artifacts, out)[command])
        # click itself refuses a folder where its option wants a file (usage, exit 2)
        codes = frozenset({2, 7}) if where == "an existing folder" else frozenset({7})
        left_alone = command in FOLDER_OUTPUTS or where == "an existing folder"  # a folder that was there before
        assert_refused(result, *([] if left_alone else [out]), codes=codes)
        assert_no_complete_folder(command, out)
    finally:
        if where == "a read-only disk":
            subprocess.run(["umount", str(read_only)], check=False)


@pytest.mark.parametrize("command", ["optimize", "export", "train", "compile"])
def test_full_disk(command, artifacts, tiny_disk):
    """ENOSPC for real: the tmpfs is filled to within 4 KiB, then each command writes to it."""
    filler = tiny_disk / "filler"
    filler.write_bytes(b"\0" * (60 * 1024))
    out = tiny_disk / "out"
    try:
        record(command, "a full disk")
        result = invoke(commands(artifacts, out)[command])
        assert_refused(result, *([] if command in FOLDER_OUTPUTS else [out]), codes=frozenset({7}))
        assert "No space left" in result.stderr
        assert_no_complete_folder(command, out)  # train's config.json fits; nothing after it does
    finally:
        subprocess.run(["rm", "-rf", str(out), str(filler)], check=False)


@settings(FUZZ, max_examples=40)
@given(target=st.text(min_size=0, max_size=12), board=st.one_of(st.none(), st.text(min_size=0, max_size=12)))
def test_unknown_targets_and_boards(target, board, tmp_path_factory):
    assume(target not in TARGETS or (board is not None and board not in BOARDS))
    folder = tmp_path_factory.mktemp("target")
    model, out = folder / "model.onnx", folder / "out"
    model.write_bytes(b"")
    record("compile --target --board", target, str(board))
    args = ["compile", model, "--target", target, "-o", out, *([] if board is None else ["--board", board])]
    assert_refused(invoke(args), out, codes=frozenset({2}))


@pytest.mark.parametrize(
    "target, board, target_json, code",
    [
        ("x86", "rpi4", None, 4),
        ("cuda", "rpi4", None, 4),
        ("arm", None, "{ not json", 3),
        ("arm", None, '{"kind": "cuda"}', 3),
        ("arm", None, "[]", 3),
    ],
)
def test_contradictory_targets(target, board, target_json, code, artifacts, tmp_path):
    """Known names that do not go together, and --target-json files that are not targets."""
    out = tmp_path / "out"
    args = ["compile", artifacts.packed, "--target", target, "-o", out]
    if board:
        args += ["--board", board]
    if target_json is not None:
        (tmp_path / "target.json").write_text(target_json)
        args += ["--target-json", tmp_path / "target.json"]
    record("compile", target, str(board), str(target_json))
    assert_refused(invoke(args), out, codes=frozenset({code}))


@pytest.mark.parametrize(
    "args",
    [
        ["--device", "tpu"],
        ["--device", "cuda"],  # this machine has no CUDA build of torch
        ["--sparsity", "nan"],
        ["--sparsity", "-0.1"],
        ["--width", "0"],
        ["--batch-size", "0"],
        ["--lr", "-1"],
        ["--epochs", "-5"],
        ["--dataset", "synthetic:0x0x0"],
        ["--dataset", "synthetic:3x-1x2"],
        ["--dataset", "cifar10:"],
        ["--method", "jackpot"],
        ["--pretrained", "/nowhere"],
    ],
)
def test_bad_training_options(args, tmp_path):
    out = tmp_path / "run"
    record("train", *args)
    result = invoke(["train", "--width", "0.25", "--epochs", "1", "--out", out, *args])
    assert_refused(result)
    assert not (out / "checkpoint.pt").exists()


NUMBER_OPTIONS = {
    # option: values that are no setting of it (each is refused before any training)
    "--width": st.floats(max_value=0.0) | st.just(math.inf),
    "--lr": st.floats(max_value=0.0) | st.just(math.inf),
    "--weight-decay": st.floats(max_value=-1e-12) | st.just(math.inf),
    "--momentum": st.floats(max_value=-1e-12) | st.floats(min_value=1.0),
    "--label-smoothing": st.floats(max_value=-1e-12) | st.floats(min_value=1.0),
    "--sparsity": st.floats(max_value=-1e-12) | st.floats(min_value=1.0),
    "--restriction-rate": st.floats(max_value=0.0) | st.floats(min_value=1.0 + 1e-9),
}


@settings(FUZZ, max_examples=80)
@given(option=st.sampled_from(sorted(NUMBER_OPTIONS)), data=st.data(), command=st.sampled_from(["train", "sweep"]))
def test_number_options_out_of_range_or_not_finite(option, data, command, tmp_path_factory):
    """``--weight-decay -1`` and ``--width inf`` ended in tracebacks: every number option refuses
    a NaN, an infinity and a value outside its range as a usage error."""
    value = data.draw(NUMBER_OPTIONS[option] | st.just(math.nan))
    assume(command == "train" or option in ("--width", "--sparsity"))
    out = tmp_path_factory.mktemp("numbers") / "out"
    args = [command, "--epochs", "1", "-o", out, f"{option}={value!r}"]  # "=": "-1.0" is no option name
    record(*map(str, args))
    result = invoke(args)
    assert_refused(result, out, codes=frozenset({2}))
    assert option in result.stderr.splitlines()[-1], "refused for another reason than the value"
