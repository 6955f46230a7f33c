"""Inputs that are not what they claim: CIFAR-10 batches with bad labels or hostile pickles, input
paths that are not regular files, and ``--target-json`` files for targets mptc does not build.

* A batch's labels must be integers from 0 to 9, one per image; a python batch must be a dict
  of ``uint8`` images and labels, and may not ask for an array larger than a batch (a few bytes
  of pickle can ask for a TiB through numpy's own constructors). ``mptc train`` refuses every
  other batch with exit 3 before it trains.
* Every file a command reads is a regular file: a FIFO made ``--target-json`` block forever; a
  device, a socket or a folder is refused too (exit 3, or click's exit 2 for a folder).
* A target triple that is neither x86-64 nor aarch64 (nor a CUDA target) is exit 4, named.
"""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy._core.multiarray import _reconstruct

from tests.robustness.harness import FUZZ, assert_refused, deadline, invoke, make_special, record

BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
IMAGES = 4
TRAIN = ["train", "--width", "0.25", "--epochs", "1", "--batch-size", "4"]


class Reduce:
    """Pickles as ``callable(*args)`` (then ``__setstate__(state)``): how hostile batches are built."""

    def __init__(self, *reduce):
        self.reduce = reduce

    def __reduce__(self):
        return self.reduce


BOMBS = {
    "a 1 TiB array": Reduce(_reconstruct, (np.ndarray, (2**40,), b"b")),
    "a 1 TiB array by its state": Reduce(
        _reconstruct, (np.ndarray, (0,), b"b"), (1, (2**20, 2**20), np.dtype("u1"), False, b"")
    ),
    "a billion objects": Reduce(_reconstruct, (np.ndarray, (0,), b"b"), (1, (2**30,), np.dtype("O"), False, [])),
    "a 1 GiB item": Reduce(_reconstruct, (np.ndarray, (1,), np.dtype(("V", 2**30)))),
    "ndarray called directly": Reduce(np.ndarray, ((2**40,),)),
    "code": Reduce(os.system, ("true",)),
}


def good_images(rng: np.random.Generator, count: int = IMAGES) -> np.ndarray:
    return rng.integers(0, 256, (count, 3072), dtype=np.uint8)


@st.composite
def bad_labels(draw) -> object:
    """Labels for ``IMAGES`` images that are not ``IMAGES`` integers from 0 to 9."""
    out_of_range = st.integers(-(2**70), -1) | st.integers(10, 2**70) | st.sampled_from([-1, 10, 255, 256])
    fine = st.integers(0, 9)
    how = draw(st.sampled_from(["value", "float", "bool", "count", "array", "not a list"]))
    if how == "value":
        labels = draw(st.lists(fine, min_size=IMAGES, max_size=IMAGES))
        labels[draw(st.integers(0, IMAGES - 1))] = draw(out_of_range)
        return labels
    if how in ("float", "bool"):
        labels = draw(st.lists(fine, min_size=IMAGES, max_size=IMAGES))
        odd = draw(st.floats(allow_nan=True)) if how == "float" else draw(st.booleans())
        labels[draw(st.integers(0, IMAGES - 1))] = odd
        return labels
    if how == "count":
        count = draw(st.integers(0, 2 * IMAGES).filter(lambda n: n != IMAGES))
        return draw(st.lists(fine, min_size=count, max_size=count))
    if how == "array":
        dtype = draw(st.sampled_from(["float32", "float64", "int64", "uint8", "int8"]))
        values = draw(st.lists(st.integers(-5, 300), min_size=IMAGES, max_size=IMAGES))
        array = np.array(values).astype(dtype)
        if dtype.startswith("float") or not ((array >= 0) & (array < 10)).all():
            return array
        return array.reshape(2, 2)  # right values, wrong shape
    return draw(st.sampled_from([None, 3, "labels", b"\x00\x01", {b"x": 1}]))


@st.composite
def bad_python_batch(draw) -> bytes:
    """A pickled python batch that is not one: bad labels, bad images, not a dict, or a bomb."""
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    how = draw(st.sampled_from(["labels", "images", "structure", "bomb"]))
    batch: object = {b"data": good_images(rng), b"labels": [int(v) for v in rng.integers(0, 10, IMAGES)]}
    if how == "labels":
        batch[b"labels"] = draw(bad_labels())  # type: ignore[index]
    elif how == "images":
        batch[b"data"] = draw(  # type: ignore[index]
            st.sampled_from(
                [
                    good_images(rng).astype(np.float32),
                    good_images(rng)[:, :100],
                    good_images(rng).reshape(IMAGES, 3, 32, 32),
                    good_images(rng).tolist(),
                    good_images(rng).astype(object),
                    None,
                ]
            )
        )
    elif how == "structure":
        batch = draw(
            st.sampled_from(
                [[1, 2, 3], 5, "batch", None, np.zeros(3), {b"data": good_images(rng)}, {b"labels": [0] * IMAGES}]
            )
        )
    else:
        batch[draw(st.sampled_from([b"data", b"labels"]))] = BOMBS[draw(st.sampled_from(sorted(BOMBS)))]  # type: ignore[index]
    return pickle.dumps(batch, protocol=draw(st.sampled_from([2, 4])))


@st.composite
def bad_binary_batch(draw) -> bytes:
    """A binary batch (records of a label byte and 3072 pixel bytes) with a label byte of 10 or more."""
    records = np.random.default_rng(draw(st.integers(0, 2**16))).integers(0, 256, (IMAGES, 3073), dtype=np.uint8)
    records[:, 0] %= 10
    records[draw(st.integers(0, IMAGES - 1)), 0] = draw(st.integers(10, 255))
    return records.tobytes()


def write_batches(folder, binary: bool) -> None:
    rng = np.random.default_rng(0)
    for name in BATCHES:
        labels = rng.integers(0, 10, IMAGES)
        if binary:
            (folder / f"{name}.bin").write_bytes(
                np.concatenate([labels[:, None].astype(np.uint8), good_images(rng)], axis=1).tobytes()
            )
        else:
            (folder / name).write_bytes(pickle.dumps({b"data": good_images(rng), b"labels": labels.tolist()}))


def test_bad_cifar_batches_are_refused_before_training(tmp_path_factory):
    @settings(FUZZ, max_examples=120)
    @given(
        binary=st.sampled_from([False, False, False, True]),  # python batches have more ways to go wrong
        which=st.sampled_from(BATCHES),
        data=st.data(),
    )
    def check(binary, which, data) -> None:
        folder = tmp_path_factory.mktemp("cifar")
        write_batches(folder, binary)
        content = data.draw(bad_binary_batch() if binary else bad_python_batch())
        (folder / (f"{which}.bin" if binary else which)).write_bytes(content)
        out = folder / "run"
        record("train cifar10", content)
        with deadline(60):
            result = invoke([*TRAIN, "--dataset", f"cifar10:{folder}", "--out", out])
        assert_refused(result, codes=frozenset({3}))
        assert not (out / "checkpoint.pt").exists()

    check()


def test_good_cifar_batches_still_load(tmp_path):
    """The refusals above are not everything: standard batches of both kinds read as before."""
    from mptc.data import load_dataset

    for binary in (False, True):
        folder = tmp_path / ("bin" if binary else "py")
        folder.mkdir()
        write_batches(folder, binary)
        data = load_dataset(f"cifar10:{folder}")
        assert data.train.x.shape == (5 * IMAGES, 3, 32, 32) and len(data.test) == IMAGES
        assert int(data.train.y.max()) < 10 and data.train.y.dtype.is_floating_point is False


KINDS = ["fifo", "device", "socket", "folder"]
READERS = {
    "target JSON": lambda p, a, t: ["compile", a.packed, "--target", "x86", "--target-json", p, "-o", t / "out"],
    "inspect": lambda p, a, t: ["inspect", p],
    "optimize": lambda p, a, t: ["optimize", p, "-o", t / "out.onnx"],
    "compile": lambda p, a, t: ["compile", p, "--target", "x86", "-o", t / "out"],
    "approximate": lambda p, a, t: ["approximate", p, "-o", t / "out"],
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reader", sorted(READERS))
def test_inputs_that_are_not_regular_files(reader, kind, artifacts, tmp_path):
    path = tmp_path / "input"
    keep = make_special(path, kind)
    try:
        record(reader, kind)
        with deadline(60):
            result = invoke(READERS[reader](path, artifacts, tmp_path))
        assert_refused(result, codes=frozenset({2, 3}) if kind == "folder" else frozenset({3}))
    finally:
        if keep is not None:
            keep.close()


@pytest.mark.parametrize("kind", ["fifo", "device"])
@pytest.mark.parametrize("where", ["run config", "ticket", "cifar batch"])
def test_files_inside_inputs_that_are_not_regular(where, kind, artifacts, copy_run, tmp_path):
    """Files a command finds inside a folder it was given: a run's config or ticket, a CIFAR batch."""
    if where == "cifar batch":
        folder = tmp_path / "cifar"
        folder.mkdir()
        write_batches(folder, binary=False)
        (folder / "data_batch_3").unlink()
        make_special(folder / "data_batch_3", kind)
        args = [*TRAIN, "--dataset", f"cifar10:{folder}", "--out", tmp_path / "run"]
    else:
        run = copy_run()
        name = "config.json" if where == "run config" else "ticket.safetensors"
        (run / name).unlink()
        make_special(run / name, kind)
        args = ["train", "--width", "0.25", "--epochs", "1", "--seed", "1", "--resume", "--out", run]
        args = args if where == "run config" else ["export", run, "-o", tmp_path / "out.onnx"]
    record(where, kind)
    with deadline(60):
        assert_refused(invoke(args), codes=frozenset({3}))


@pytest.mark.parametrize(
    "spec, code",
    [
        ({"kind": "llvm", "mtriple": "riscv64-unknown-linux-gnu"}, 4),
        ({"kind": "llvm", "mtriple": "armv7a-linux-gnueabihf"}, 4),
        ({"kind": "llvm", "mtriple": "wasm32-unknown-unknown"}, 4),
        ({"kind": "cuda", "arch": "sm_90", "host": {"kind": "llvm", "mtriple": "riscv64-linux-gnu"}}, 4),
        ({"kind": "llvm", "mtriple": 64}, 3),
        ({"kind": "llvm", "num-cores": 0}, 3),
        ({"kind": "llvm", "num-cores": "four"}, 3),
        ({"kind": "llvm", "mcpu": 7}, 3),
        ({"kind": "vulkan"}, 4),
    ],
)
def test_target_json_for_targets_mptc_does_not_build(spec, code, artifacts, tmp_path):
    target = "cuda" if spec["kind"] == "cuda" else "x86"
    (tmp_path / "target.json").write_text(json.dumps(spec))
    out = tmp_path / "out"
    record("compile --target-json", json.dumps(spec))
    result = invoke(
        ["compile", artifacts.packed, "--target", target, "--target-json", tmp_path / "target.json", "-o", out]
    )
    assert_refused(result, out, codes=frozenset({code}))
    if code == 4:  # the message names what is not built
        named = spec.get("mtriple") or spec.get("host", {}).get("mtriple") or spec["kind"]
        assert str(named) in result.stderr.splitlines()[-1]


@pytest.mark.parametrize("text", ["[" * 100_000, " " * (2 << 20) + "{}", '{"kind": "llvm"' + "," * 10])
def test_target_json_that_is_too_deep_or_too_large(text, artifacts, tmp_path):
    (tmp_path / "target.json").write_text(text)
    record("compile --target-json", text[:64], str(len(text)))
    result = invoke(
        [
            "compile",
            artifacts.packed,
            "--target",
            "x86",
            "--target-json",
            tmp_path / "target.json",
            "-o",
            tmp_path / "o",
        ]
    )
    assert_refused(result, tmp_path / "o", codes=frozenset({3}))
