"""The in-memory data set every loader returns, and seeded batching over it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from mptc.errors import InputError


@dataclass(frozen=True)
class DataSplit:
    """Normalised inputs ``(N, *input_shape)`` float32 and integer labels ``(N,)``."""

    x: Tensor
    y: Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def batches(
        self, batch_size: int, generator: torch.Generator | None = None, min_size: int = 1
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """Mini-batches; shuffled by ``generator`` when given (a fresh, seeded one per epoch
        makes the order a function of (seed, epoch), which resume relies on). A last batch of
        fewer than ``min_size`` samples joins the one before (:func:`batch_starts`)."""
        order = torch.randperm(len(self), generator=generator) if generator is not None else torch.arange(len(self))
        starts = batch_starts(len(self), batch_size, min_size)
        for start, end in zip(starts, [*starts[1:], len(self)]):
            index = order[start:end]
            yield self.x[index], self.y[index]


def batch_starts(samples: int, batch_size: int, min_size: int = 1) -> list[int]:
    """Where each mini-batch starts; a last batch of fewer than ``min_size`` samples joins the one
    before, so training never steps on a single sample (BatchNorm cannot normalise one)."""
    starts = list(range(0, samples, batch_size))
    if len(starts) > 1 and samples - starts[-1] < min_size:
        starts.pop()
    return starts


@dataclass(frozen=True)
class Dataset:
    """Both splits of a data set; made only by a loader, and refused (:class:`InputError`) unless
    every label is an integer class index and each split has one per sample (:func:`check_labels`)."""

    name: str
    train: DataSplit
    test: DataSplit
    input_shape: tuple[int, ...]
    num_classes: int
    augment: bool = False  # random crop (pad 4) + horizontal flip while training, CIFAR practice

    def __post_init__(self) -> None:
        if self.num_classes < 1:
            raise InputError(f"data set {self.name} has no classes")
        for split, data in (("train", self.train), ("test", self.test)):
            check_labels(data.y.numpy(), len(data.x), self.num_classes, f"data set {self.name}, {split} split,")


def check_labels(labels: np.ndarray, samples: int, classes: int, where: str) -> None:
    """Raise :class:`InputError` unless ``labels`` are ``samples`` integers in ``[0, classes)``.

    A label of another type or out of range would otherwise reach the loss (an index error deep in
    torch, or a float truncated to a class), and a count that differs would pair images with the
    wrong labels; an empty split makes every accuracy NaN.
    """
    if labels.dtype.kind not in "iu":
        raise InputError(f"{where} labels must be integers, got {labels.dtype}")
    if labels.ndim != 1 or len(labels) != samples:
        raise InputError(f"{where} has {samples} samples but {labels.size} labels (of shape {labels.shape})")
    if samples == 0:
        raise InputError(f"{where} has no samples")
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= classes:
        raise InputError(
            f"{where} has label {low if low < 0 else high}: expected 0 to {classes - 1} ({classes} classes)"
        )


def augment_batch(x: Tensor, generator: torch.Generator, pad: int = 4) -> Tensor:
    """Random shifts of up to ``pad`` pixels (zero fill) and horizontal flips, per image."""
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    out = torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])
    out[flip] = out[flip].flip(-1)
    return out
