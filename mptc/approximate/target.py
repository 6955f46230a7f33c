"""The network to approximate: a trained ``--method dense`` MLP run, as affine layers in float64.

Our MLP is ``Flatten -> [Linear -> BatchNorm -> ReLU] * h -> Linear`` without biases. In eval
mode a BatchNorm is affine, so each hidden block folds into one affine map:
``BN(W x) = g (W x - mu) / sqrt(var + eps) + beta = (D W) x + (beta - D mu)`` with
``D = diag(g / sqrt(var + eps))``. The target is then ``f(x) = A_l relu(... relu(A_1 x + b_1) ...) + b_l``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mptc.config import TrainConfig
from mptc.errors import InputError, UnsupportedError
from mptc.ticket import load_ticket
from mptc.train.rundir import RunDir


@dataclass(frozen=True)
class AffineMLP:
    """``f(x) = W_l relu(... relu(W_1 x + b_1) ...) + b_l`` in float64 (weights ``(out, in)``)."""

    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]

    @property
    def widths(self) -> list[int]:
        """``[d_0, d_1, ..., d_l]``: input, hidden and output widths."""
        return [self.weights[0].shape[1], *(w.shape[0] for w in self.weights)]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Outputs ``(N, d_l)`` for inputs ``(N, d_0)``."""
        h = np.asarray(x, np.float64)
        for index, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = h @ w.T + b
            if index < len(self.weights) - 1:
                h = np.maximum(h, 0.0)
        return h


def fold_mlp(model: nn.Module) -> AffineMLP:
    """Fold a dense MLP's (Linear, BatchNorm) pairs into affine layers (see the module doc).

    Raises:
        UnsupportedError: ``model`` is not a ReLU MLP of bias-free Linear layers with BatchNorm.
    """
    modules = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.BatchNorm1d, nn.Conv2d))]
    weights, biases = [], []
    index = 0
    while index < len(modules):
        linear = modules[index]
        if not isinstance(linear, nn.Linear) or linear.bias is not None:
            raise UnsupportedError(
                f"approximate handles bias-free Linear/BatchNorm MLPs, found {type(linear).__name__}"
            )
        w = linear.weight.detach().double().numpy()
        b = np.zeros(w.shape[0])
        if index + 1 < len(modules) and isinstance(modules[index + 1], nn.BatchNorm1d):
            norm = modules[index + 1]
            scale = 1.0 / torch.sqrt(norm.running_var.double() + norm.eps)
            if norm.weight is not None:
                scale = scale * norm.weight.detach().double()
            shift = -norm.running_mean.double() * scale
            if norm.bias is not None:
                shift = shift + norm.bias.detach().double()
            w, b = scale.numpy()[:, None] * w, shift.numpy()
            index += 1
        weights.append(w)
        biases.append(b)
        index += 1
    return AffineMLP(tuple(weights), tuple(biases))


def load_target(run: str | Path) -> tuple[nn.Module, AffineMLP, TrainConfig]:
    """The dense MLP of run directory (or ticket) ``run``: the torch model (eval), its folded
    float64 form, and its config.

    Raises:
        InputError: not a finished run, or not a ``--method dense`` ``--model mlp`` run.
    """
    path = Path(run)
    if path.is_dir():
        path = RunDir(path).ticket
    if not path.is_file():
        raise InputError(f"target {run} is not a finished run directory (no ticket.safetensors)")
    model, config = load_ticket(path)
    if config.method != "dense" or config.model != "mlp":
        raise InputError(
            f"target {run} is a --model {config.model} --method {config.method} run; approximate needs a --model mlp --method dense run"
        )
    return model, fold_mlp(model), config
