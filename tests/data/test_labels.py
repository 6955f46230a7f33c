"""Labels are integer class indices, one per sample (``check_labels``, in every ``Dataset``), and a
CIFAR-10 python batch may not ask for more memory than a batch holds."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from numpy._core.multiarray import _reconstruct

from mptc.data.base import Dataset, DataSplit, check_labels
from mptc.data.cifar import MAX_BATCH_BYTES, _read_python_batch
from mptc.errors import InputError


@pytest.mark.parametrize(
    "labels, samples, message",
    [
        (np.array([0, 1, 10]), 3, "has label 10: expected 0 to 9"),
        (np.array([0, -1, 2]), 3, "has label -1"),
        (np.array([0.0, 1.0, 2.0]), 3, "labels must be integers, got float64"),
        (np.array([True, False, True]), 3, "labels must be integers, got bool"),
        (np.array([0, 1]), 3, "has 3 samples but 2 labels"),
        (np.array([[0, 1, 2]]), 3, "has 3 samples but 3 labels"),
        (np.zeros(0, np.int64), 0, "has no samples"),
    ],
)
def test_check_labels_refuses(labels, samples, message):
    with pytest.raises(InputError, match=message):
        check_labels(labels, samples, 10, "split")


def test_check_labels_takes_any_integer_dtype():
    for dtype in (np.uint8, np.int16, np.int32, np.int64):
        check_labels(np.arange(10, dtype=dtype), 10, 10, "split")


def test_every_dataset_checks_its_labels():
    x = torch.zeros(4, 2)
    good = DataSplit(x, torch.tensor([0, 1, 2, 1]))
    Dataset("toy", good, good, (2,), 3)
    with pytest.raises(InputError, match="toy, test split, has label 3"):
        Dataset("toy", good, DataSplit(x, torch.tensor([0, 1, 3, 1])), (2,), 3)
    with pytest.raises(InputError, match="toy, train split, labels must be integers"):
        Dataset("toy", DataSplit(x, torch.zeros(4)), good, (2,), 3)


class Reduce:
    def __init__(self, *reduce):
        self.reduce = reduce

    def __reduce__(self):
        return self.reduce


@pytest.mark.parametrize(
    "data, message",
    [
        (Reduce(_reconstruct, (np.ndarray, (MAX_BATCH_BYTES + 1,), b"b")), "larger than a batch"),
        (
            Reduce(_reconstruct, (np.ndarray, (0,), b"b"), (1, (2**40,), np.dtype("u1"), False, b"")),
            "larger than a batch",
        ),
        (Reduce(np.ndarray, ((2**40,),)), "_reconstruct only"),
        (np.zeros((2, 3072), object), "dtype object"),
    ],
)
def test_python_batches_cannot_ask_for_huge_arrays(data, message, tmp_path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": data, b"labels": [0, 1]}, protocol=4))
    with pytest.raises(InputError, match=message):
        _read_python_batch(path)


def test_a_real_python_batch_still_reads(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (3, 3072), dtype=np.uint8)
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": images, b"labels": [0, 9, 4]}, protocol=2))
    x, y = _read_python_batch(path)
    assert x.shape == (3, 3, 32, 32) and np.array_equal(x.reshape(3, -1), images) and y.tolist() == [0, 9, 4]
