"""Weights as a pure function of (seed, architecture, init).

Every parameter is drawn from its own CPU generator keyed by ``(seed, qualified name, role)``,
so the same seed rebuilds the same random weights on any device and in any process; a ticket
over random weights is then just the seed, the mask bits and alpha.
"""

from __future__ import annotations

import hashlib
import math

import torch
from torch import nn

from mptc.config import INITS
from mptc.nn.layers import MaskedLayer

RELU_GAIN = math.sqrt(2.0)


def derive_seed(seed: int, *keys: object) -> int:
    """A 63-bit seed from ``seed`` and any keys, stable across processes and Python versions."""
    digest = hashlib.sha256("/".join(map(str, (seed, *keys))).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def generator(seed: int, *keys: object) -> torch.Generator:
    """A CPU generator seeded from :func:`derive_seed`."""
    return torch.Generator().manual_seed(derive_seed(seed, *keys))


def fan_in(weight: torch.Tensor) -> int:
    """Inputs feeding one output: ``in_channels/groups * kh * kw`` or ``in_features``."""
    return int(weight[0].numel())


def random_weight(shape: torch.Size, init: str, sparsity: float, gen: torch.Generator) -> torch.Tensor:
    """Draw a frozen weight tensor.

    * ``kaiming-normal``: ``N(0, 2 / fan_in)``.
    * ``scaled-kaiming``: variance divided by the KEPT fraction ``1 - sparsity`` (the reference
      divides by the pruned fraction, a bug), so the pruned layer keeps the activation scale.
    * ``signed-constant``: ``+-sigma`` with ``sigma = sqrt(2 / fan_in)``; then alpha == sigma and
      MPT-1/32 and edge-popup coincide (Sreenivasan et al. 2022).
    """
    fan = int(torch.Size(shape)[1:].numel())
    std = RELU_GAIN / math.sqrt(fan)
    if init == "kaiming-normal":
        return torch.randn(shape, generator=gen) * std
    if init == "scaled-kaiming":
        return torch.randn(shape, generator=gen) * (std / math.sqrt(1.0 - sparsity))
    if init == "signed-constant":
        signs = torch.randint(0, 2, shape, generator=gen).float() * 2 - 1
        return signs * std
    raise ValueError(f"unknown init {init!r}; expected one of {', '.join(INITS)}")


def initialize(model: nn.Module, seed: int, init: str) -> None:
    """Draw every parameter of ``model`` from ``seed``: masked weights with ``init`` (their
    biases, if any, 0), edge-popup scores (:func:`initialize_scores`), and ordinary (trainable)
    layers with PyTorch's defaults under a per-layer generator."""
    for name, module in model.named_modules():
        if isinstance(module, MaskedLayer):
            with torch.no_grad():
                module.weight.copy_(
                    random_weight(module.weight.shape, init, module.spec.sparsity, generator(seed, name, "weight"))
                )
                if module.bias is not None:
                    module.bias.zero_()
        elif isinstance(module, (nn.Conv2d, nn.Linear)):
            gen = generator(seed, name, "weight")
            with torch.no_grad():
                module.weight.copy_(random_weight(module.weight.shape, "kaiming-normal", 0.0, gen))
                if module.bias is not None:
                    module.bias.zero_()
    initialize_scores(model, seed)


def initialize_scores(model: nn.Module, seed: int) -> None:
    """Draw the masked layers' scores ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` from ``seed``, leaving
    every weight as it is: masks over pre-trained weights start here too."""
    for name, module in model.named_modules():
        if isinstance(module, MaskedLayer):
            bound = 1.0 / math.sqrt(fan_in(module.weight))
            scores = torch.rand(module.weight.shape, generator=generator(seed, name, "scores")) * 2 * bound - bound
            with torch.no_grad():
                module.scores.copy_(scores)
