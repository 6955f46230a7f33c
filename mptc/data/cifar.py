"""CIFAR-10 from a local folder (nothing is downloaded): the binary version (``data_batch_1.bin``
...) or the python version (``data_batch_1`` ... pickles).

The python batches are pickles, and pickles can run code: they are read with an unpickler that
refuses every global except the few NumPy array constructors the batches need, and those check
the size an array asks for before NumPy allocates it (a few bytes of pickle can ask for a TiB).
Every batch file is a regular file of at most :data:`MAX_BATCH_BYTES`, read before it is parsed;
its images are ``uint8 (N, 3072)`` and its labels ``N`` integers from 0 to 9.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mptc.data.base import Dataset, DataSplit, check_labels
from mptc.errors import InputError
from mptc.io import read_regular_file

TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_BATCH = "test_batch"
MEAN = np.array([0.4914, 0.4822, 0.4465], np.float32).reshape(1, 3, 1, 1)
STD = np.array([0.2470, 0.2435, 0.2616], np.float32).reshape(1, 3, 1, 1)
IMAGE_BYTES = 3 * 32 * 32
RECORD = 1 + IMAGE_BYTES
CLASSES = 10
MAX_BATCH_BYTES = 64 << 20
"""Largest batch file read: the standard ones are about 30 MB (10,000 images)."""

_RECONSTRUCT = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")}
_ARRAY_KINDS = "biuf"  # what a batch's arrays may hold: no objects (each one a pickle of its own), no raw bytes


def _check_array(shape: Any, dtype: Any) -> None:
    """Refuse an array a batch could not hold before NumPy allocates it."""
    try:
        dims = tuple(int(d) for d in shape)
        kind = np.dtype(dtype)
    except (TypeError, ValueError) as error:
        raise pickle.UnpicklingError(f"not an array description: shape {shape!r}, dtype {dtype!r}") from error
    if kind.kind not in _ARRAY_KINDS or any(d < 0 for d in dims):
        raise pickle.UnpicklingError(f"refusing an array of dtype {kind} and shape {dims}")
    size = kind.itemsize * int(np.prod(dims, dtype=object))
    if size > MAX_BATCH_BYTES:
        raise pickle.UnpicklingError(f"refusing an array of {size:,} bytes (shape {dims}, {kind}): larger than a batch")


class _BatchArray(np.ndarray):
    """The one array type a batch pickle can build, by ``_reconstruct`` only: its ``__setstate__``
    (the pickle's BUILD, which gives the real shape and data) checks the size first."""

    def __new__(cls, *args: Any, **kwargs: Any) -> _BatchArray:
        raise pickle.UnpicklingError("a batch builds its arrays with numpy's _reconstruct only")

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) != 5:
            raise pickle.UnpicklingError(f"not an array state: {type(state).__name__}")
        _check_array(state[1], state[2])
        super().__setstate__(state)


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    if subtype is not _BatchArray:
        raise pickle.UnpicklingError(f"refusing to reconstruct {subtype!r}")
    _check_array(shape, dtype)
    return np.ndarray.__new__(_BatchArray, tuple(int(d) for d in shape), np.dtype(dtype))


class _ArrayOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _RECONSTRUCT:
            return _reconstruct
        if (module, name) == ("numpy", "ndarray"):
            return _BatchArray
        if (module, name) in {("numpy", "dtype"), ("_codecs", "encode")}:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


def _read_python_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = read_regular_file(path, MAX_BATCH_BYTES, "CIFAR-10 batch")
    try:
        batch = _ArrayOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except (pickle.UnpicklingError, ValueError, EOFError, TypeError, AttributeError, IndexError) as error:
        raise InputError(f"{path} is not a CIFAR-10 python batch: {error}") from error
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise InputError(f"{path} is not a CIFAR-10 python batch: expected a dict with b'data' and b'labels'")
    data, labels = batch[b"data"], batch[b"labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != IMAGE_BYTES:
        shown = f"{data.dtype}{data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise InputError(f"{path}: b'data' must be uint8 images (N, {IMAGE_BYTES}), got {shown}")
    if isinstance(labels, list):
        odd = next((type(label).__name__ for label in labels if type(label) is not int), None)
        if odd is not None:
            raise InputError(f"{path}: b'labels' must be integers, got a list holding {odd}")
        try:
            labels = np.array(labels, np.int64) if labels else np.zeros(0, np.int64)
        except OverflowError as error:
            raise InputError(f"{path}: b'labels' holds an integer far outside 0 to {CLASSES - 1}") from error
    if not isinstance(labels, np.ndarray):
        raise InputError(f"{path}: b'labels' must be a list of integers, got {type(labels).__name__}")
    check_labels(np.asarray(labels), len(data), CLASSES, str(path))
    return np.asarray(data).reshape(-1, 3, 32, 32), np.asarray(labels).astype(np.int64)


def _read_binary_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = np.frombuffer(read_regular_file(path, MAX_BATCH_BYTES, "CIFAR-10 batch"), np.uint8)
    if raw.size == 0 or raw.size % RECORD:
        raise InputError(f"{path} is not a CIFAR-10 binary batch ({raw.size} bytes, not a multiple of {RECORD})")
    records = raw.reshape(-1, RECORD)
    labels = records[:, 0].astype(np.int64)
    check_labels(labels, len(records), CLASSES, str(path))
    return records[:, 1:].reshape(-1, 3, 32, 32), labels


def _read_split(folder: Path, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    parts = []
    for name in names:
        if (folder / f"{name}.bin").is_file():
            parts.append(_read_binary_batch(folder / f"{name}.bin"))
        elif (folder / name).is_file():
            parts.append(_read_python_batch(folder / name))
        else:
            raise InputError(f"CIFAR-10 folder {folder} has no {name} or {name}.bin (expected the standard batches)")
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def load_cifar10(folder: str | Path) -> Dataset:
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"CIFAR-10 folder {root} does not exist")
    for candidate in (root, root / "cifar-10-batches-py", root / "cifar-10-batches-bin"):
        if (candidate / TEST_BATCH).is_file() or (candidate / f"{TEST_BATCH}.bin").is_file():
            root = candidate
            break
    x_train, y_train = _read_split(root, TRAIN_BATCHES)
    x_test, y_test = _read_split(root, [TEST_BATCH])
    normalise = lambda a: torch.from_numpy((a.astype(np.float32) / 255.0 - MEAN) / STD)  # noqa: E731
    return Dataset(
        name=f"cifar10:{folder}",
        train=DataSplit(normalise(x_train), torch.from_numpy(y_train)),
        test=DataSplit(normalise(x_test), torch.from_numpy(y_test)),
        input_shape=(3, 32, 32),
        num_classes=CLASSES,
        augment=True,
    )
