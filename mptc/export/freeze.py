"""Freeze a trained ticket into a plain PyTorch module that exports to standard ONNX.

Masked layers become ordinary ``nn.Conv2d`` / ``nn.Linear`` whose weight IS the effective
weight (ternary ``alpha * sign(W) * M`` for MPT, ``W * M`` for edge-popup), so no latent weight,
score or Sign/Abs/ReduceMean chain reaches the graph; binary activations become
``Where(x >= 0, 1, -1)``, the project's sign with sign(0) = +1, and flattening becomes a
``Reshape`` to a constant shape.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn

from mptc.conventions import ternary_scale
from mptc.nn.layers import BinaryActivation, MaskedConv2d, MaskedLayer, MaskedLinear


class ExportFlatten(nn.Module):
    """``flatten(x, 1)`` written as ``Reshape(x, [-1, C*H*W])``: a constant shape, where
    ``nn.Flatten`` under a dynamic batch exports a Shape/Gather/Concat chain that compilers
    must then evaluate symbolically."""

    def forward(self, x: Tensor) -> Tensor:
        return x.reshape(-1, math.prod(x.shape[1:]))


class ChannelScale(nn.Module):
    """``y * scale`` with one scale per output channel (or one for the layer): exports as ``Mul``."""

    def __init__(self, scale: Tensor, rank: int) -> None:
        super().__init__()
        shape = (1, -1) + (1,) * (rank - 2) if scale.numel() > 1 else ()
        self.register_buffer("scale", scale.reshape(shape).clone())

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


class ChannelBias(nn.Module):
    """``y + bias`` with one bias per output channel (axis 1, or the last axis of a linear's
    output): exports as ``Add``, which ``mptc.passes`` folds into the packed operator's bias."""

    def __init__(self, bias: Tensor, rank: int) -> None:
        super().__init__()
        self.register_buffer("bias", bias.reshape((1, -1) + (1,) * (rank - 2)).clone())

    def forward(self, x: Tensor) -> Tensor:
        return x + self.bias


class ExportSign(nn.Module):
    """``sign(x)`` with sign(0) = +1, written as ``Where(x >= 0, 1, -1)`` for ONNX."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.where(x >= 0, 1.0, -1.0)


def _frozen(layer: MaskedLayer) -> nn.Module:
    """The plain layer computing ``layer``'s effective weight.

    A ternary weight ``alpha[o] * T`` (MPT, or edge-popup over signed-constant weights) becomes
    ``Mul(Conv(x, T), alpha)`` with ``T`` in {-1, 0, +1}: sums of +-1 activations times integer
    weights are then exact in float32 in every runtime, whatever its summation order, so the
    stages agree on every later sign decision (rounded sums of +-alpha do not, and a deep
    binary network amplifies one flipped sign). A bias follows as ``Add`` (after the scale, as
    the layer computes it); a binary input comes first as :class:`ExportSign`.
    """
    weight = layer.effective_weight().detach().clone()
    bias = None if layer.bias is None else layer.bias.detach().clone()
    if isinstance(layer, MaskedConv2d):
        plain: nn.Module = nn.Conv2d(
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size,
            stride=layer.stride,
            padding=layer.padding,
            dilation=layer.dilation,
            groups=layer.groups,
            bias=False,
            padding_mode=layer.padding_mode,
        )
    elif isinstance(layer, MaskedLinear):
        plain = nn.Linear(layer.in_features, layer.out_features, bias=False)
    else:
        raise TypeError(f"cannot freeze {type(layer).__name__}")
    stages: list[nn.Module] = [ExportSign()] if layer.input_sign is not None else []
    alpha = ternary_scale(weight.numpy())
    if alpha is None:
        plain.weight = nn.Parameter(weight, requires_grad=False)
        if bias is not None:
            plain.bias = nn.Parameter(bias, requires_grad=False)
        stages.append(plain)
    else:
        alpha_t = torch.from_numpy(alpha)
        plain.weight = nn.Parameter(torch.sign(weight) * (weight != 0), requires_grad=False)
        scale = alpha_t[:1] if bool((alpha_t == alpha_t[0]).all()) else alpha_t
        stages += [plain, ChannelScale(scale, weight.dim())]
        if bias is not None:
            stages.append(ChannelBias(bias, weight.dim()))
    return stages[0] if len(stages) == 1 else nn.Sequential(*stages)


def freeze(model: nn.Module) -> nn.Module:
    """A frozen, eval-mode copy of ``model`` made of standard layers only."""
    frozen = copy.deepcopy(model).cpu().eval()
    for parent in list(frozen.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, MaskedLayer):
                setattr(parent, name, _frozen(child))
            elif isinstance(child, BinaryActivation):
                setattr(parent, name, ExportSign())
            elif isinstance(child, nn.Flatten) and child.start_dim == 1 and child.end_dim == -1:
                setattr(parent, name, ExportFlatten())
    for parameter in frozen.parameters():
        parameter.requires_grad_(False)
    return frozen
