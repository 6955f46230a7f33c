"""Distillation route: learn a mask over a random signed-constant network that mimics a target.

The student is an MLP of our masked layers (edge-popup, :class:`~mptc.nn.layers.MaskedLinear`)
over frozen weights ``+-sigma`` (``signed-constant`` init, i.e. a random +-1 network with one
scale per layer), ``factor`` times as wide and ``depth`` times as deep as the target's hidden
layers, with non-affine BatchNorm and ReLU, and ONE learned real scalar ``lambda`` on the
output. Only the scores and ``lambda`` are trained, by minimising the distance of the outputs
to the target's logits: ``L = mean ||lambda g(x) - f(x)||^2 / d_l`` over the training inputs
and, with ``random_inputs = r > 0``, ``r`` times as many Gaussian inputs ``x ~ N(0, I)`` per
batch (the data are standardised, so these cover the input space around them).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mptc.data import Dataset
from mptc.nn.init import generator, initialize
from mptc.nn.layers import MaskedLinear, MaskSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistillConfig:
    """Student shape and training: ``factor`` x wider, ``depth`` x deeper, edge-popup at
    ``sparsity``; ``random_inputs`` Gaussian inputs per training input in each batch."""

    factor: float = 1.0
    depth: int = 1
    sparsity: float = 0.5
    epochs: int = 20
    lr: float = 0.01
    batch_size: int = 64
    random_inputs: float = 0.0
    seed: int = 0


class RandomBinaryStudent(nn.Module):
    """``lambda * masked-MLP(x)`` over signed-constant weights (see the module doc)."""

    def __init__(self, widths: list[int], config: DistillConfig) -> None:
        super().__init__()
        hidden = [max(1, round(w * config.factor)) for w in widths[1:-1] for _ in range(config.depth)]
        sizes = [widths[0], *hidden, widths[-1]]
        layers: list[nn.Module] = [nn.Flatten()]
        for index, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:])):
            layers.append(MaskedLinear(fan_in, fan_out, spec=MaskSpec(config.sparsity)))
            if index < len(sizes) - 2:
                layers += [nn.BatchNorm1d(fan_out, affine=False), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.scale = nn.Parameter(torch.ones(()))
        self.widths = sizes
        initialize(self, config.seed, "signed-constant")

    def forward(self, x: Tensor) -> Tensor:
        return self.scale * self.body(x)


def distill(target: nn.Module, dataset: Dataset, widths: list[int], config: DistillConfig) -> RandomBinaryStudent:
    """Train a :class:`RandomBinaryStudent`'s scores and scale to mimic ``target`` (eval mode)."""
    student = RandomBinaryStudent(widths, config)
    target.eval()
    with torch.no_grad():
        teacher = target(dataset.train.x)
    optimizer = torch.optim.Adam([p for p in student.parameters() if p.requires_grad], lr=config.lr)
    steps = config.epochs * -(-len(dataset.train) // config.batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    index = torch.arange(len(dataset.train))
    for epoch in range(config.epochs):
        student.train()
        order = torch.randperm(len(index), generator=generator(config.seed, "distill", epoch))
        noise = generator(config.seed, "distill-inputs", epoch)
        for start in range(0, len(order), config.batch_size):
            batch = order[start : start + config.batch_size]
            x, y = dataset.train.x[batch], teacher[batch]
            if config.random_inputs > 0:
                extra = torch.randn((round(config.random_inputs * len(batch)), *x.shape[1:]), generator=noise)
                with torch.no_grad():
                    x, y = torch.cat([x, extra]), torch.cat([y, target(extra)])
            loss = nn.functional.mse_loss(student(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
        log.info("distill factor %g epoch %d: loss %.4f", config.factor, epoch + 1, float(loss.detach()))
    return student.eval()
