"""Conv-2/4/6/8 (Frankle & Carbin 2019): pairs of 3x3 convs, max-pool between pairs, FC 256-256.

No BatchNorm in the ReLU form (as the papers); the binary-activation form puts a BatchNorm
before each sign, without which sign(conv) carries no scale information to learn from.
"""

from __future__ import annotations

from torch import Tensor, nn

from mptc.errors import UnsupportedError
from mptc.models.factory import LayerRecipe

PAIR_CHANNELS = (64, 128, 256, 512)
FC = (256, 256)


class ConvNet(nn.Module):
    def __init__(self, recipe: LayerRecipe, input_shape: tuple[int, ...], num_classes: int, depth: int) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise UnsupportedError(f"conv{depth} needs image input (C, H, W), got shape {input_shape}")
        channels, height, width = input_shape
        pairs = depth // 2
        if min(height, width) < 2**pairs:
            raise UnsupportedError(
                f"conv{depth} pools {pairs} times and needs inputs of at least {2**pairs}x{2**pairs}, got {height}x{width}"
            )
        layers: list[nn.Module] = []
        for pair in range(pairs):
            out = recipe.channels(PAIR_CHANNELS[pair])
            for index in range(2):
                position = "first" if pair == 0 and index == 0 else "hidden"
                layers.append(recipe.conv(channels, out, 3, padding=1, position=position))
                if recipe.binary_act:
                    layers.append(recipe.norm2d(out))
                layers.append(recipe.activation())
                channels = out
            layers.append(nn.MaxPool2d(2))
            height, width = height // 2, width // 2
        layers.append(nn.Flatten())
        features = channels * height * width
        for base in FC:
            hidden = recipe.channels(base)
            layers.append(recipe.linear(features, hidden))
            if recipe.binary_act:
                layers.append(recipe.norm1d(hidden))
            layers.append(recipe.activation())
            features = hidden
        layers.append(recipe.linear(features, num_classes, position="last"))
        self.body = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)
