"""Seeded synthetic data of any shape, for speed tests and CI: Gaussian inputs labelled by a
fixed random linear teacher, so the task is learnable and identical for a given spec."""

from __future__ import annotations

import math

import torch

from mptc.data.base import Dataset, DataSplit

DEFAULT_SHAPE = (3, 32, 32)
TRAIN_SIZE, TEST_SIZE, CLASSES, SEED = 512, 256, 10, 1234


def load_synthetic(shape: tuple[int, ...] = DEFAULT_SHAPE, num_classes: int = CLASSES) -> Dataset:
    gen = torch.Generator().manual_seed(SEED)
    teacher = torch.randn(math.prod(shape), num_classes, generator=gen)
    x = torch.randn(TRAIN_SIZE + TEST_SIZE, *shape, generator=gen)
    y = (x.flatten(1) @ teacher).argmax(1)
    return Dataset(
        name=f"synthetic:{'x'.join(map(str, shape))}",
        train=DataSplit(x[:TRAIN_SIZE], y[:TRAIN_SIZE]),
        test=DataSplit(x[TRAIN_SIZE:], y[TRAIN_SIZE:]),
        input_shape=tuple(shape),
        num_classes=num_classes,
    )
