"""The in-memory data set every loader returns, and seeded batching over it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class DataSplit:
    """Normalised inputs ``(N, *input_shape)`` float32 and integer labels ``(N,)``."""

    x: Tensor
    y: Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def batches(self, batch_size: int, generator: torch.Generator | None = None) -> Iterator[tuple[Tensor, Tensor]]:
        """Mini-batches; shuffled by ``generator`` when given (a fresh, seeded one per epoch
        makes the order a function of (seed, epoch), which resume relies on)."""
        order = torch.randperm(len(self), generator=generator) if generator is not None else torch.arange(len(self))
        for start in range(0, len(self), batch_size):
            index = order[start : start + batch_size]
            yield self.x[index], self.y[index]


@dataclass(frozen=True)
class Dataset:
    name: str
    train: DataSplit
    test: DataSplit
    input_shape: tuple[int, ...]
    num_classes: int
    augment: bool = False  # random crop (pad 4) + horizontal flip while training, CIFAR practice


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
