"""Builds the layers of every architecture from one method description.

Architectures ask the factory for a conv, a linear, a norm or an activation and say where the
layer sits (first, hidden, last); the factory decides masked vs ordinary, ternary vs real,
binary vs ReLU activation. So every model gets every method and variant for free.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from mptc.config import METHODS
from mptc.nn.layers import BinaryActivation, MaskedConv2d, MaskedLinear, MaskSpec

POSITIONS = ("first", "hidden", "last")


@dataclass(frozen=True)
class LayerRecipe:
    """What the method asks of every layer.

    Attributes:
        method: ``dense`` trains ordinary weights; the others learn a mask over frozen weights
            (``jackpot``/``magnitude`` rank by signed scores over pre-trained weights).
        sparsity: fraction pruned in every masked layer.
        binarize: ternary ``alpha * sign(W) * M`` weights (MPT-1/32); implied by ``biprop``.
        binary_act: sign activations (MPT-1/1); the network's input stays real.
        width: channel/feature multiplier.
        dense_first, dense_last: keep the first/last layer an ordinary full-precision layer.
        per_channel_alpha: one alpha per output channel (ternary only).
        learn_bn: BatchNorm has a trained affine transform (always true for ``dense``).
    """

    method: str = "biprop"
    sparsity: float = 0.5
    binarize: bool = False
    binary_act: bool = False
    width: float = 1.0
    dense_first: bool = False
    dense_last: bool = False
    per_channel_alpha: bool = False
    learn_bn: bool = False

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; expected one of {', '.join(METHODS)}")
        if self.width <= 0:
            raise ValueError(f"width multiplier must be positive, got {self.width}")

    @property
    def ternary(self) -> bool:
        return self.method == "biprop" or (self.binarize and self.method != "dense")

    def channels(self, base: int) -> int:
        """``base`` scaled by the width multiplier (at least 1)."""
        return max(1, int(round(base * self.width)))

    def mask_spec(self, position: str) -> MaskSpec | None:
        """The masked layer's spec at ``position``, or None for an ordinary layer."""
        if position not in POSITIONS:
            raise ValueError(f"position must be one of {POSITIONS}, got {position!r}")
        if (
            self.method == "dense"
            or (position == "first" and self.dense_first)
            or (position == "last" and self.dense_last)
        ):
            return None
        return MaskSpec(
            sparsity=self.sparsity,
            ternary=self.ternary,
            signed_scores=self.method in ("jackpot", "magnitude"),
            per_channel_alpha=self.per_channel_alpha and self.ternary,
        )

    def conv(
        self, cin: int, cout: int, kernel: int, *, stride: int = 1, padding: int = 0, position: str = "hidden"
    ) -> nn.Module:
        spec = self.mask_spec(position)
        if spec is None:
            return nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        return MaskedConv2d(cin, cout, kernel, stride=stride, padding=padding, spec=spec)

    def linear(self, fin: int, fout: int, *, position: str = "hidden") -> nn.Module:
        spec = self.mask_spec(position)
        if spec is None:
            return nn.Linear(fin, fout, bias=False)
        return MaskedLinear(fin, fout, spec=spec)

    def norm2d(self, channels: int) -> nn.Module:
        return nn.BatchNorm2d(channels, affine=self.learn_bn or self.method == "dense")

    def norm1d(self, features: int) -> nn.Module:
        return nn.BatchNorm1d(features, affine=self.learn_bn or self.method == "dense")

    def activation(self) -> nn.Module:
        return BinaryActivation() if self.binary_act else nn.ReLU()
