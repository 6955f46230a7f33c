"""CIFAR ResNet-18 (He et al. 2016; BasicBlock [2, 2, 2, 2], 64-512 channels), non-affine BN as
the references.

ReLU form: ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``. Binary-activation form
(Bi-Real Net, Liu et al. 2018): every binary conv gets its own real-valued shortcut,
``y = bn1(conv1(sign(x))) + shortcut(x)``, ``out = bn2(conv2(sign(y))) + y``, so the real signal
survives the binarization; the down-sampling shortcut is a (real-input) 1x1 conv + BN.
"""

from __future__ import annotations

from torch import Tensor, nn

from mptc.errors import UnsupportedError
from mptc.models.factory import LayerRecipe

STAGES = ((64, 1), (128, 2), (256, 2), (512, 2))
BLOCKS_PER_STAGE = 2


class BasicBlock(nn.Module):
    def __init__(self, recipe: LayerRecipe, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.binary = recipe.binary_act
        self.act1, self.act2 = recipe.activation(), recipe.activation()
        self.conv1 = recipe.conv(cin, cout, 3, stride=stride, padding=1)
        self.bn1 = recipe.norm2d(cout)
        self.conv2 = recipe.conv(cout, cout, 3, padding=1)
        self.bn2 = recipe.norm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(recipe.conv(cin, cout, 1, stride=stride), recipe.norm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        if self.binary:
            y = self.bn1(self.conv1(self.act1(x))) + self.shortcut(x)
            return self.bn2(self.conv2(self.act2(y))) + y
        y = self.act1(self.bn1(self.conv1(x)))
        return self.act2(self.bn2(self.conv2(y)) + self.shortcut(x))


class ResNet18(nn.Module):
    def __init__(self, recipe: LayerRecipe, input_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise UnsupportedError(f"resnet18 needs image input (C, H, W), got shape {input_shape}")
        channels = recipe.channels(STAGES[0][0])
        stem = [recipe.conv(input_shape[0], channels, 3, padding=1, position="first"), recipe.norm2d(channels)]
        if not recipe.binary_act:
            stem.append(nn.ReLU())
        self.stem = nn.Sequential(*stem)
        blocks: list[nn.Module] = []
        for base, stride in STAGES:
            out = recipe.channels(base)
            for index in range(BLOCKS_PER_STAGE):
                blocks.append(BasicBlock(recipe, channels, out, stride if index == 0 else 1))
                channels = out
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = recipe.linear(channels, num_classes, position="last")

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(self.blocks(self.stem(x))))
