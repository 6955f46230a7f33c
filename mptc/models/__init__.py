"""Model zoo: every architecture built from a :class:`LayerRecipe` (any method, any variant)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import nn

from mptc.config import METHODS, MODELS, is_import_path
from mptc.errors import UnsupportedError
from mptc.models.convnet import ConvNet
from mptc.models.factory import LayerRecipe
from mptc.models.mlp import MLP
from mptc.models.resnet import ResNet18
from mptc.models.vgg import VGGSmall

Builder = Callable[[LayerRecipe, tuple[int, ...], int], nn.Module]

# One per name of mptc.config.MODELS (the light list the CLI offers); test_models builds each.
BUILDERS: dict[str, Builder] = {
    "mlp": MLP,
    "conv2": lambda r, s, c: ConvNet(r, s, c, depth=2),
    "conv4": lambda r, s, c: ConvNet(r, s, c, depth=4),
    "conv6": lambda r, s, c: ConvNet(r, s, c, depth=6),
    "conv8": lambda r, s, c: ConvNet(r, s, c, depth=8),
    "vgg-small": VGGSmall,
    "resnet18": ResNet18,
}


def build_model(
    name: str,
    recipe: LayerRecipe,
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    model_args: Mapping[str, Any] | None = None,
    binary_act_before: Sequence[str] = (),
    seed: int = 0,
) -> nn.Module:
    """Instantiate architecture ``name`` (weights not yet drawn: see :func:`mptc.nn.init.initialize`).

    ``name`` is a zoo model, or an import path ``package.module:Factory``: the user's model
    ``Factory(**model_args)``, constructed under a torch RNG seeded from ``seed``
    (:mod:`mptc.models.user`) and converted by :func:`mptc.models.convert.convert` with
    ``binary_act_before``; its input shape and classes are its own.
    """
    if is_import_path(name):
        from mptc.models.convert import convert
        from mptc.models.user import instantiate

        model = instantiate(name, model_args or {}, seed)
        convert(model, recipe, binary_act_before)
        return model
    if name not in MODELS:
        raise UnsupportedError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}")
    return BUILDERS[name](recipe, tuple(input_shape), num_classes)


__all__ = ["BUILDERS", "METHODS", "MODELS", "LayerRecipe", "build_model"]
