"""Multi-layer perceptron (the digits default): Linear -> BN -> act, then a linear classifier."""

from __future__ import annotations

import math

from torch import Tensor, nn

from mptc.models.factory import LayerRecipe

HIDDEN = (512, 512)


class MLP(nn.Module):
    def __init__(self, recipe: LayerRecipe, input_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        features = math.prod(input_shape)
        layers: list[nn.Module] = [nn.Flatten()]
        for index, base in enumerate(HIDDEN):
            width = recipe.channels(base)
            position = "first" if index == 0 else "hidden"
            layers += [recipe.linear(features, width, position=position), recipe.norm1d(width), recipe.activation()]
            features = width
        layers.append(recipe.linear(features, num_classes, position="last"))
        self.body = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)
