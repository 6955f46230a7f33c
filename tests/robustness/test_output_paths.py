"""Output paths that are not a new or regular file, and the mode of what is written.

The rule, defined once in ``mptc.io`` for every output: a path that names no file (``-o ''``) is a
usage error (exit 2); something there other than a regular file (a FIFO, a device, a socket, a
symbolic link, a folder) is left exactly as it was and the write refused (exit 7: as root, ``-o
/dev/null`` replaced the system's /dev/null with a file, and a link was replaced rather than
followed); a new file gets the umask's mode, ``0o666 & ~umask`` (it was always 0600).
"""

from __future__ import annotations

import os
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mptc.errors import OutputError, UsageError
from mptc.io import write_bytes
from tests.robustness.harness import FUZZ, assert_refused, deadline, invoke, make_special, record

FILE_COMMANDS = {
    "optimize": lambda artifacts, out: ["optimize", artifacts.model, "-o", out],
    "export": lambda artifacts, out: ["export", artifacts.run, "-o", out],
}
KINDS = ["fifo", "device", "socket", "link to a file", "dangling link", "link to a fifo", "link to a folder"]


def fingerprint(path) -> tuple:
    """What must not change: the kind of thing at ``path``, a link's target and its content."""
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        pointee = path.parent / os.readlink(path)
        content = pointee.read_bytes() if pointee.is_file() else None
        return "link", os.readlink(path), content, stat.S_IFMT(os.lstat(pointee).st_mode) if pointee.exists() else None
    return stat.S_IFMT(info.st_mode), info.st_rdev, info.st_ino


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("command", sorted(FILE_COMMANDS))
def test_outputs_that_are_not_regular_files_are_left_alone(command, kind, artifacts, tmp_path):
    out = tmp_path / "out.onnx"
    keep = make_special(out, kind)
    before = fingerprint(out)
    try:
        record(command, "-o", kind)
        with deadline(120):
            result = invoke(FILE_COMMANDS[command](artifacts, out))
        # click itself refuses a folder where its option wants a file (usage, exit 2)
        assert_refused(result, codes=frozenset({2, 7}) if kind == "link to a folder" else frozenset({7}))
        assert fingerprint(out) == before, f"the {kind} at -o was changed"
        assert not list(tmp_path.glob(".out.onnx.*.tmp")), "a temporary file was left behind"
    finally:
        if keep is not None:
            keep.close()


@pytest.mark.parametrize("path", ["", ".", ".."])
@pytest.mark.parametrize("command", sorted(FILE_COMMANDS))
def test_outputs_that_name_no_file_are_usage_errors(command, path, artifacts, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    record(command, "-o", repr(path))
    result = invoke(FILE_COMMANDS[command](artifacts, path))
    assert_refused(result, codes=frozenset({2}))
    assert list(tmp_path.iterdir()) == [], "something was written into the working directory"


@pytest.mark.parametrize("kind", ["fifo", "link to a file", "link to a fifo"])
def test_compile_does_not_replace_what_is_not_a_regular_file_in_its_folder(kind, artifacts, tmp_path):
    """A folder output's files follow the same rule: here its manifest."""
    out = tmp_path / "module"
    out.mkdir()
    make_special(out / "manifest.json", kind)
    before = fingerprint(out / "manifest.json")
    record("compile", "manifest.json", kind)
    with deadline(120):
        result = invoke(["compile", artifacts.packed, "--target", "x86", "-o", out])
    assert_refused(result, codes=frozenset({7}))
    assert fingerprint(out / "manifest.json") == before


@pytest.mark.parametrize("kind", ["fifo", "device", "link to a file"])
@pytest.mark.parametrize("command", ["compile", "train"])
def test_folder_outputs_that_are_not_folders(command, kind, artifacts, tmp_path):
    out = tmp_path / "out"
    make_special(out, kind)
    before = fingerprint(out)
    args = {
        "compile": ["compile", artifacts.packed, "--target", "x86", "-o", out],
        "train": ["train", "--width", "0.25", "--epochs", "1", "--out", out],
    }[command]
    record(command, "-o", kind)
    with deadline(120):
        result = invoke(args)
    assert_refused(result, codes=frozenset({2, 7}))
    assert fingerprint(out) == before


@settings(FUZZ, max_examples=40)
@given(umask=st.sampled_from([0o022, 0o002, 0o077, 0o027, 0o000, 0o777]) | st.integers(0, 0o777))
def test_new_outputs_get_the_umasks_mode(umask, tmp_path_factory):
    folder = tmp_path_factory.mktemp("umask")
    previous = os.umask(umask)
    try:
        write_bytes(folder / "new.bin", b"data")
        write_bytes(folder / "new.bin", b"replaced")  # a replaced file too
    finally:
        os.umask(previous)
    record("umask", oct(umask))
    assert stat.S_IMODE(os.stat(folder / "new.bin").st_mode) == 0o666 & ~umask


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_command_outputs_get_the_umasks_mode(umask, artifacts, tmp_path):
    previous = os.umask(umask)
    try:
        result = invoke(["optimize", artifacts.model, "-o", tmp_path / "packed.onnx"])
    finally:
        os.umask(previous)
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(os.stat(tmp_path / "packed.onnx").st_mode) == 0o666 & ~umask


@settings(FUZZ, max_examples=60)
@given(kind=st.sampled_from(KINDS + ["regular", "missing", "empty", "dot"]), data=st.binary(max_size=64))
def test_the_writer_follows_one_rule(kind, data, tmp_path_factory):
    """The library writer itself: what it refuses, with which error, and what it leaves."""
    folder = tmp_path_factory.mktemp("writer")
    target = folder / "target"
    keep = None
    if kind == "regular":
        target.write_bytes(b"old")
    elif kind in KINDS:
        keep = make_special(target, kind)
    path = {"empty": "", "dot": os.path.join(folder, ".")}.get(kind, target)
    before = fingerprint(target) if os.path.lexists(target) and kind not in ("regular",) else None
    record("write_bytes", kind, data)
    try:
        with deadline(30):
            if kind in ("regular", "missing"):
                write_bytes(path, data)
                assert target.read_bytes() == data
                return
            error = UsageError if kind in ("empty", "dot") else OutputError
            with pytest.raises(error):
                write_bytes(path, data)
        if before is not None:
            assert fingerprint(target) == before
        assert not list(folder.glob(".*.tmp"))
    finally:
        if keep is not None:
            keep.close()
