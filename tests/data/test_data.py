import pickle

import numpy as np
import pytest
import torch

from mptc.data import load_dataset
from mptc.data.base import batch_starts
from mptc.errors import InputError


def test_digits_split_is_fixed_stratified_and_normalised():
    a, b = load_dataset("digits"), load_dataset("digits")
    assert len(a.train) == 1437 and len(a.test) == 360
    assert torch.equal(a.test.x, b.test.x) and torch.equal(a.test.y, b.test.y)
    assert a.test.y.bincount().min() >= 35  # every class in the test split
    assert abs(float(a.train.x.mean())) < 1e-5 and abs(float(a.train.x.std()) - 1) < 1e-3


def test_synthetic_any_shape_is_seeded():
    a, b = load_dataset("synthetic:2x5x7"), load_dataset("synthetic:2x5x7")
    assert a.input_shape == (2, 5, 7) and torch.equal(a.train.x, b.train.x)


@pytest.mark.parametrize("spec", ["mnist", "synthetic:3xAx4", "cifar10:/does/not/exist", "digits:extra"])
def test_bad_dataset_specs_are_clear_errors(spec):
    with pytest.raises(InputError):
        load_dataset(spec)


def _write_python_batches(folder, per_batch=4):
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            b"labels": [int(v) for v in rng.integers(0, 10, per_batch)],
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))


def test_cifar10_python_batches_load_without_executing_code(tmp_path):
    _write_python_batches(tmp_path)
    data = load_dataset(f"cifar10:{tmp_path}")
    assert data.train.x.shape == (20, 3, 32, 32) and len(data.test) == 4 and data.augment


def test_cifar10_pickle_with_code_is_refused(tmp_path):
    _write_python_batches(tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "data_batch_3").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}))
    with pytest.raises(InputError, match="refusing to load global"):
        load_dataset(f"cifar10:{tmp_path}")


def test_cifar10_binary_batches(tmp_path):
    rng = np.random.default_rng(1)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (tmp_path / f"{name}.bin").write_bytes(rng.integers(0, 10, (3, 3073), dtype=np.uint8).tobytes())
    data = load_dataset(f"cifar10:{tmp_path}")
    assert len(data.train) == 15 and data.input_shape == (3, 32, 32)
    (tmp_path / "test_batch.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(InputError, match="not a CIFAR-10 binary batch"):
        load_dataset(f"cifar10:{tmp_path}")


@pytest.mark.parametrize(
    "samples, batch, min_size, expected",
    [
        (10, 4, 1, [0, 4, 8]),
        (9, 4, 2, [0, 4]),
        (9, 4, 1, [0, 4, 8]),
        (1, 4, 2, [0]),
        (8, 4, 2, [0, 4]),
    ],
)
def test_batch_starts_merge_a_short_last_batch(samples, batch, min_size, expected):
    assert batch_starts(samples, batch, min_size) == expected


def test_a_synthetic_shape_too_large_to_generate_is_refused():
    with pytest.raises(InputError, match="values per sample"):
        load_dataset("synthetic:100000x100000")
