"""CIFAR-10 from a local folder (nothing is downloaded): the binary version (``data_batch_1.bin``
...) or the python version (``data_batch_1`` ... pickles).

The python batches are pickles, and pickles can run code: they are read with an unpickler that
refuses every global except the few NumPy array constructors the batches need.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import torch

from mptc.data.base import Dataset, DataSplit
from mptc.errors import InputError

TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_BATCH = "test_batch"
MEAN = np.array([0.4914, 0.4822, 0.4465], np.float32).reshape(1, 3, 1, 1)
STD = np.array([0.2470, 0.2435, 0.2616], np.float32).reshape(1, 3, 1, 1)
RECORD = 1 + 3 * 32 * 32

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return super().find_class(module, name)


def _read_python_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = _ArrayOnlyUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
        data = np.asarray(batch[b"data"], np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch[b"labels"], np.int64)
    except (pickle.UnpicklingError, KeyError, ValueError, EOFError, TypeError) as error:
        raise InputError(f"{path} is not a CIFAR-10 python batch: {error}") from error
    return data, labels


def _read_binary_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = np.frombuffer(path.read_bytes(), np.uint8)
    if raw.size == 0 or raw.size % RECORD:
        raise InputError(f"{path} is not a CIFAR-10 binary batch ({raw.size} bytes, not a multiple of {RECORD})")
    records = raw.reshape(-1, RECORD)
    return records[:, 1:].reshape(-1, 3, 32, 32), records[:, 0].astype(np.int64)


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
        num_classes=10,
        augment=True,
    )
