"""VGG-Small (Zhang et al. 2018, LQ-Nets; the MPT paper's CIFAR model): 128-128-M-256-256-M-512-512-M, FC.

Every conv is followed by BatchNorm and the activation; in the binary-activation form the
sign follows the BatchNorm, as BNN practice does.
"""

from __future__ import annotations

from torch import Tensor, nn

from mptc.errors import UnsupportedError
from mptc.models.factory import LayerRecipe

STAGES = (128, 256, 512)


class VGGSmall(nn.Module):
    def __init__(self, recipe: LayerRecipe, input_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise UnsupportedError(f"vgg-small needs image input (C, H, W), got shape {input_shape}")
        channels, height, width = input_shape
        if min(height, width) < 8:
            raise UnsupportedError(f"vgg-small pools 3 times and needs inputs of at least 8x8, got {height}x{width}")
        layers: list[nn.Module] = []
        for stage, base in enumerate(STAGES):
            out = recipe.channels(base)
            for index in range(2):
                position = "first" if stage == 0 and index == 0 else "hidden"
                layers += [
                    recipe.conv(channels, out, 3, padding=1, position=position),
                    recipe.norm2d(out),
                    recipe.activation(),
                ]
                channels = out
            layers.append(nn.MaxPool2d(2))
            height, width = height // 2, width // 2
        layers += [nn.Flatten(), recipe.linear(channels * height * width, num_classes, position="last")]
        self.body = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)
