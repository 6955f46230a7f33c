"""The manifest round-trips through its file, and a manifest of the wrong shape is an InputError."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from mptc.artifact import (
    MANIFEST_FILE,
    MAX_FILE_BYTES,
    MAX_MANIFEST_BYTES,
    REFERENCE_FILE,
    Manifest,
    Sizes,
    SourceModel,
    TargetInfo,
    TensorInfo,
    Versions,
    read_manifest,
    read_reference,
    write_manifest,
    write_reference,
)
from mptc.errors import InputError

MANIFEST = Manifest(
    versions=Versions(mptc="0.1.0", tvm="0.27.0"),
    target=TargetInfo(
        name="arm",
        family="arm",
        board="rpi4",
        spec={"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]},
    ),
    source_model=SourceModel(path="packed.onnx", sha256="0" * 64, bytes=1234),
    input=TensorInfo(name="x", shape=[1, 16], dtype="float32"),
    output=TensorInfo(name="y", shape=[1, 10], dtype="float32"),
    files={"module": "module.so", "reference": "reference.npz"},
    reference_runtime="onnxruntime 1.31.0",
    sparse_break_even={"BinaryConv": 0.3, "BinaryDense": 0.5},
    layers=[{"name": "fc1", "kernel": "xnor-popcount", "reason": "binary input"}],
    sizes=Sizes(module_bytes=4096, source_model_bytes=1234, packed_weight_bytes=80, lowered_weight_bytes=96),
)


def written(tmp_path: Path, edit) -> Path:
    """A folder whose manifest is :data:`MANIFEST` as JSON, changed in place by ``edit``."""
    data = MANIFEST.to_json()
    edit(data)
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(data))
    return tmp_path


def test_round_trip(tmp_path: Path) -> None:
    write_manifest(tmp_path, MANIFEST)
    assert read_manifest(tmp_path) == MANIFEST
    assert next(iter(json.loads((tmp_path / MANIFEST_FILE).read_text()))) == "format"


def test_reference_round_trip(tmp_path: Path) -> None:
    x, y = np.arange(16, dtype=np.float32).reshape(1, 16), np.ones((1, 10), np.float32)
    write_reference(tmp_path, x, y)
    read_x, read_y = read_reference(tmp_path)
    assert np.array_equal(read_x, x) and np.array_equal(read_y, y)


def test_a_whole_number_is_a_float(tmp_path: Path) -> None:
    out = written(tmp_path, lambda m: m.update(sparse_break_even=1))
    assert read_manifest(out).sparse_break_even == 1


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.update(target="x86"), "'target' must be an object, got a string"),
        (lambda m: m.update(layers=3), "'layers' must be an array, got an integer"),
        (lambda m: m["input"].update(shape=[[1, 16]]), r"'input.shape\[0\]' must be an integer, got an array"),
        (lambda m: m["input"].update(shape="1x16"), "'input.shape' must be an array, got a string"),
        (lambda m: m["output"].update(shape=[1, 10.0]), r"'output.shape\[1\]' must be an integer, got a number"),
        (lambda m: m["target"].update(board=4), "'target.board' must be a string or null, got an integer"),
        (lambda m: m["sizes"].update(module_bytes=True), "'sizes.module_bytes' must be an integer, got a boolean"),
        (
            lambda m: m.update(sparse_break_even="0.5"),
            "'sparse_break_even' must be a number or an object, got a string",
        ),
        (lambda m: m["files"].update(module=None), "'files.module' must be a string, got null"),
        (lambda m: m.pop("input"), "has no 'input'"),
        (lambda m: m["input"].pop("dtype"), "'input' has no 'dtype'"),
        (lambda m: m.update(format=2), "manifest format 2, this mptc reads format 1"),
        (lambda m: m.update(format="1"), "'format' must be an integer, got a string"),
    ],
)
def test_wrong_types_name_the_field(tmp_path: Path, edit, message: str) -> None:
    out = written(tmp_path, edit)
    with pytest.raises(InputError, match=message):
        read_manifest(out)


@pytest.mark.parametrize(("text", "message"), [("{ nope", "cannot read"), ("[]", "must be an object, got an array")])
def test_not_a_json_object(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / MANIFEST_FILE).write_text(text)
    with pytest.raises(InputError, match=message):
        read_manifest(tmp_path)


def test_reference_without_y(tmp_path: Path) -> None:
    np.savez(tmp_path / "reference.npz", x=np.zeros(3))
    with pytest.raises(InputError, match="must hold arrays 'x'"):
        read_reference(tmp_path)


@pytest.mark.parametrize(
    "name, size, read",
    [
        (MANIFEST_FILE, MAX_MANIFEST_BYTES + 1, read_manifest),
        (REFERENCE_FILE, MAX_FILE_BYTES + 1, read_reference),
    ],
)
def test_oversized_files_are_refused_before_they_are_read(tmp_path: Path, name: str, size: int, read) -> None:
    with open(tmp_path / name, "wb") as sparse:  # sparse: takes no disk, would take memory if read
        sparse.truncate(size)
    with pytest.raises(InputError, match="bytes, more than the"):
        read(tmp_path)


@pytest.mark.parametrize("name, read", [(MANIFEST_FILE, read_manifest), (REFERENCE_FILE, read_reference)])
def test_a_fifo_in_place_of_a_file_is_refused_without_blocking(tmp_path: Path, name: str, read) -> None:
    os.mkfifo(tmp_path / name)
    with pytest.raises(InputError, match="not a regular file"):
        read(tmp_path)
