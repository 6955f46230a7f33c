"""Masked layers: frozen weights, learnable scores, and one ``mask()`` each.

A masked layer is an ordinary ``nn.Conv2d`` / ``nn.Linear`` whose weight is frozen and whose
forward uses an *effective* weight derived from a score tensor of the same shape
(see :class:`MaskSpec` for the four combinations the methods use). Everything is configured
through ``__init__``; nothing reads global state.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mptc.conventions import kept_count
from mptc.nn.estimators import BipropTernaryWeight, BiRealSign, EdgePopupMask, binary_sign, ternary_alpha, top_k_mask


@dataclass(frozen=True)
class MaskSpec:
    """How a masked layer turns (frozen weight W, scores s) into its effective weight.

    Attributes:
        sparsity: fraction of the layer's weights PRUNED, in [0, 1).
        ternary: MPT binarization ``alpha * sign(W) * M`` (biprop) instead of ``W * M``.
        signed_scores: rank by the signed score ``s`` (lottery jackpot) instead of ``|s|``.
        per_channel_alpha: one alpha per output channel instead of one per layer (ternary only).
    """

    sparsity: float
    ternary: bool = False
    signed_scores: bool = False
    per_channel_alpha: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.sparsity < 1.0:
            raise ValueError(f"sparsity is the fraction pruned and must be in [0, 1), got {self.sparsity}")
        if self.per_channel_alpha and not self.ternary:
            raise ValueError("per_channel_alpha applies to ternary (biprop) weights only")


class MaskedLayer(nn.Module):
    """Mixin holding the frozen weight's scores and the effective-weight maths."""

    weight: Tensor
    bias: Tensor | None
    spec: MaskSpec
    input_sign: nn.Module | None

    def _init_scores(self, spec: MaskSpec) -> None:
        self.spec = spec
        self.weight.requires_grad_(False)
        bias = getattr(self, "bias", None)
        if bias is not None:
            bias.requires_grad_(False)  # part of the frozen layer, as the weight
        self.scores = nn.Parameter(torch.zeros_like(self.weight))
        self.kept = kept_count(self.weight.numel(), spec.sparsity)

    def _score_key(self) -> Tensor:
        return self.scores if self.spec.signed_scores else self.scores.abs()

    def _weight_sign_abs(self) -> tuple[Tensor, Tensor]:
        """``sign(W)`` and ``|W|`` of the frozen weight, recomputed only when the weight changes."""
        key = (self.weight.data_ptr(), self.weight._version, self.weight.device)
        if getattr(self, "_sign_key", None) != key:
            weight = self.weight.detach()
            self._sign_abs, self._sign_key = (binary_sign(weight), weight.abs()), key
        return self._sign_abs

    def mask(self) -> Tensor:
        """The current binary mask (float 0/1, no gradient), exactly ``kept`` ones."""
        return top_k_mask(self._score_key().detach(), self.kept)

    def alpha(self) -> Tensor:
        """The ternary magnitude(s) for the current mask (1.0 when the layer is not ternary)."""
        if not self.spec.ternary:
            return torch.ones((), device=self.weight.device)
        return ternary_alpha(self.weight.abs(), self.mask(), self.spec.per_channel_alpha)

    def weight_and_output_scale(self) -> tuple[Tensor, Tensor | None]:
        """``(weight, scale)`` the forward pass computes ``op(x, weight) * scale`` with.

        Ternary layers give the levels ``T`` in {-1, 0, +1} and alpha shaped for the output
        (per channel on axis 1), so sums over binary inputs are exact integers; other layers give
        ``W * M`` and no scale. Both carry the method's straight-through gradient.
        """
        if self.spec.ternary:
            levels, alpha = BipropTernaryWeight.apply(
                self._score_key(), self.weight, *self._weight_sign_abs(), self.kept, self.spec.per_channel_alpha
            )
            return levels, alpha.reshape(1, -1, *(1,) * (self.weight.dim() - 2)) if alpha.dim() else alpha
        return self.weight * EdgePopupMask.apply(self._score_key(), self.kept), None

    def effective_weight(self) -> Tensor:
        """The weight the layer computes with: ``alpha * T`` (ternary) or ``W * M``."""
        weight, scale = self.weight_and_output_scale()
        if scale is None:
            return weight
        return weight * (scale.reshape(-1, *(1,) * (weight.dim() - 1)) if scale.dim() else scale)

    def _scaled(self, y: Tensor, scale: Tensor | None) -> Tensor:
        return y if scale is None else y * scale

    def set_kept(self, kept: int) -> None:
        """Keep exactly ``kept`` weights in this layer, overriding ``spec.sparsity``.

        Used where sparsity is a model-wide target split unevenly over layers, e.g. a lottery
        jackpot's per-layer counts from one global magnitude threshold; the layer's own sparsity
        is then ``1 - kept / numel``. Call before :meth:`set_mask` or training.

        Raises:
            ValueError: ``kept`` outside ``[1, numel]``.
        """
        if not 1 <= kept <= self.weight.numel():
            raise ValueError(
                f"a layer of shape {tuple(self.weight.shape)} can keep 1 to {self.weight.numel()} weights, got {kept}"
            )
        self.kept = int(kept)

    def set_mask(self, mask: Tensor) -> None:
        """Fix the scores so that :meth:`mask` returns ``mask`` exactly (used to load tickets)."""
        if mask.shape != self.weight.shape or int(mask.sum()) != self.kept:
            raise ValueError(
                f"mask of shape {tuple(mask.shape)} with {int(mask.sum())} kept does not fit a layer of "
                f"shape {tuple(self.weight.shape)} keeping {self.kept}"
            )
        with torch.no_grad():
            self.scores.copy_(mask.to(self.scores))


class BinaryActivation(nn.Module):
    """``sign(x)`` with sign(0) = +1 in the forward pass and the Bi-Real gradient backward."""

    def forward(self, x: Tensor) -> Tensor:
        return BiRealSign.apply(x)


class MaskedConv2d(nn.Conv2d, MaskedLayer):
    """``nn.Conv2d`` over a frozen weight, pruned and optionally ternarized by scores.

    Takes every ``nn.Conv2d`` option (grouped and depthwise convolutions included), so any
    user's conv converts (:mod:`mptc.models.convert`). A bias, when present, is frozen with the
    weight and added after the scale: ``y = op(x, T) * alpha + b``. ``binary_input`` puts a
    :class:`BinaryActivation` in front of the conv (MPT-1/1), inside this layer so the state
    dict keys stay those of the ``nn.Conv2d`` it replaces.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        *,
        spec: MaskSpec,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = False,
        padding_mode: str = "zeros",
        binary_input: bool = False,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias=bias,
            padding_mode=padding_mode,
        )
        self._init_scores(spec)
        self.input_sign = BinaryActivation() if binary_input else None

    def forward(self, x: Tensor) -> Tensor:
        if self.input_sign is not None:
            x = self.input_sign(x)
        weight, scale = self.weight_and_output_scale()
        if scale is None:
            return self._conv_forward(x, weight, self.bias)
        y = self._conv_forward(x, weight, None) * scale
        return y if self.bias is None else y + self.bias.reshape(1, -1, 1, 1)


class MaskedLinear(nn.Linear, MaskedLayer):
    """``nn.Linear`` over a frozen weight, pruned and optionally ternarized by scores; bias and
    ``binary_input`` as :class:`MaskedConv2d`."""

    def __init__(
        self, in_features: int, out_features: int, *, spec: MaskSpec, bias: bool = False, binary_input: bool = False
    ) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self._init_scores(spec)
        self.input_sign = BinaryActivation() if binary_input else None

    def forward(self, x: Tensor) -> Tensor:
        if self.input_sign is not None:
            x = self.input_sign(x)
        weight, scale = self.weight_and_output_scale()
        if scale is None:
            return F.linear(x, weight, self.bias)
        y = self._scaled(F.linear(x, weight), scale)
        return y if self.bias is None else y + self.bias


def masked_layers(model: nn.Module) -> list[tuple[str, MaskedLayer]]:
    """The model's masked layers with their qualified names, in definition order."""
    return [(name, module) for name, module in model.named_modules() if isinstance(module, MaskedLayer)]
