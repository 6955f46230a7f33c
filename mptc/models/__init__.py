"""Model zoo: every architecture built from a :class:`LayerRecipe` (any method, any variant)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from mptc.errors import UnsupportedError
from mptc.models.convnet import ConvNet
from mptc.models.factory import METHODS, LayerRecipe
from mptc.models.mlp import MLP
from mptc.models.resnet import ResNet18
from mptc.models.vgg import VGGSmall

Builder = Callable[[LayerRecipe, tuple[int, ...], int], nn.Module]

MODELS: dict[str, Builder] = {
    "mlp": MLP,
    "conv2": lambda r, s, c: ConvNet(r, s, c, depth=2),
    "conv4": lambda r, s, c: ConvNet(r, s, c, depth=4),
    "conv6": lambda r, s, c: ConvNet(r, s, c, depth=6),
    "conv8": lambda r, s, c: ConvNet(r, s, c, depth=8),
    "vgg-small": VGGSmall,
    "resnet18": ResNet18,
}


def build_model(name: str, recipe: LayerRecipe, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Instantiate architecture ``name`` (weights not yet drawn: see :func:`mptc.nn.init.initialize`)."""
    if name not in MODELS:
        raise UnsupportedError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}")
    return MODELS[name](recipe, tuple(input_shape), num_classes)


__all__ = ["METHODS", "MODELS", "LayerRecipe", "build_model"]
