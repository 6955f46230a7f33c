"""scikit-learn's handwritten digits (1,797 real 8x8 images, shipped in the package): the default.

The split is fixed (stratified, 20% test, ``random_state=0``) so every run, test and report
speaks about the same 360 test images. Pixels 0..16 are scaled to [0, 1] and standardised with
the training split's mean and standard deviation.
"""

from __future__ import annotations

import numpy as np
import torch

from mptc.data.base import Dataset, DataSplit

TEST_FRACTION = 0.2
SPLIT_SEED = 0


def load_digits() -> Dataset:
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    bunch = sklearn_digits()
    images = (bunch.images / 16.0).astype(np.float32)[:, None, :, :]
    labels = bunch.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=TEST_FRACTION, stratify=labels, random_state=SPLIT_SEED
    )
    mean, std = float(x_train.mean()), float(x_train.std())
    normalise = lambda a: torch.from_numpy((a - mean) / std)  # noqa: E731
    return Dataset(
        name="digits",
        train=DataSplit(normalise(x_train), torch.from_numpy(y_train)),
        test=DataSplit(normalise(x_test), torch.from_numpy(y_test)),
        input_shape=(1, 8, 8),
        num_classes=10,
    )
