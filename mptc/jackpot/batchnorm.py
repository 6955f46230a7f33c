"""BatchNorm re-estimation: the fair version of the magnitude-pruning baseline.

A jackpot keeps the pre-trained running statistics; pruning 90% of the weights shifts every
pre-activation's mean and variance, so a magnitude-pruned model evaluated with the old
statistics is far worse than its mask deserves. Re-estimating them (one pass over training
inputs, cumulative average: ``momentum=None``) gives the baseline the benefit of the doubt.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from mptc.data import DataSplit

BATCH = 256


@torch.no_grad()
def recalibrated(model: nn.Module, split: DataSplit, batch_size: int = BATCH) -> nn.Module:
    """A copy of ``model`` (eval mode) whose BatchNorm running statistics are the averages, over
    batches of ``split``'s inputs, of the batch mean and (unbiased) batch variance of the
    pre-activations; ``model`` is untouched."""
    copied = copy.deepcopy(model)
    norms = [module for module in copied.modules() if isinstance(module, _BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    copied.train()
    for x, _ in split.batches(batch_size):
        copied(x)
    return copied.eval()
