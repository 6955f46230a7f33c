"""Any ``nn.Module``, masked: every ``Conv2d`` and ``Linear`` becomes the method's masked layer, in place.

:func:`convert` walks the model in ``named_modules()`` order (the order the layers were defined in,
which for torchvision and most networks is the order they run in). Each plain ``nn.Conv2d``
(grouped and depthwise included, any stride, padding, dilation, padding mode, with or without
bias) and ``nn.Linear`` becomes a :class:`~mptc.nn.layers.MaskedConv2d` /
:class:`~mptc.nn.layers.MaskedLinear` of the :class:`~mptc.models.factory.LayerRecipe`'s spec that
holds the same weight and bias tensors under the same state-dict keys, so the unpruned model's
state dict (pre-trained weights) loads into the converted one as it is.

Positions: the first such layer is the network's ``first`` (its input, the image, stays real:
no binary activation in front of it), the last one its ``last`` (the classifier, as a rule);
``dense_first`` / ``dense_last`` keep them ordinary full-precision layers, as in the zoo.

Binary activations (MPT-1/1) go in front of masked layers: ``binary_act_before`` holds glob
patterns over the layers' qualified names (``"layer*.conv*"``; empty: every masked layer but the
first layer), or, from Python, a predicate ``(name, layer) -> bool``. The model's own activation
functions are left as they are.

Left alone, with the reason in :attr:`Conversion.left`: subclasses of ``Conv2d``/``Linear`` (their
own forward would be lost), other convolutions (``Conv1d``, transposed), the projections inside
``nn.MultiheadAttention`` (which reads their weight directly). A layer registered under two names
is refused.

What trains afterwards (for every method but ``dense``): the scores; the layers kept dense;
normalisation layers' affine parameters only with ``learn_bn``. Every other parameter of the
model (frozen weights and biases, anything else the user's model holds) is frozen.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase

from mptc.errors import InputError, UnsupportedError
from mptc.models.factory import LayerRecipe
from mptc.nn.layers import MaskedConv2d, MaskedLayer, MaskedLinear, MaskSpec

CONVERTED = (nn.Conv2d, nn.Linear)
NORMS = (_NormBase, nn.GroupNorm, nn.LayerNorm)
LayerPredicate = Callable[[str, nn.Module], bool]


@dataclass(frozen=True)
class Conversion:
    """What :func:`convert` did, layer by layer (qualified names, in model order).

    Attributes:
        masked: layers now masked.
        dense: ``Conv2d``/``Linear`` layers kept ordinary (``dense_first``/``dense_last``, or every
            one for ``method="dense"``).
        binary_inputs: masked layers with a binary activation in front.
        left: ``(name, reason)`` of convolution/linear-like layers not converted.
    """

    masked: tuple[str, ...]
    dense: tuple[str, ...]
    binary_inputs: tuple[str, ...]
    left: tuple[tuple[str, str], ...]


def convert(
    model: nn.Module,
    recipe: LayerRecipe,
    binary_act_before: Sequence[str] | LayerPredicate = (),
) -> Conversion:
    """Replace ``model``'s ``Conv2d``/``Linear`` layers by masked ones, in place (see the module doc).

    The masked layers take over the weight and bias values; scores start at 0 (draw them with
    :func:`mptc.nn.init.initialize` or :func:`~mptc.nn.init.initialize_scores`). The global torch
    RNG is left as it was.

    Args:
        model: any module holding ``Conv2d``/``Linear`` layers (not itself one of them).
        recipe: the method, sparsity and options (``recipe.width`` must be 1: the model is given).
        binary_act_before: where binary activations go when ``recipe.binary_act`` (see above).

    Raises:
        InputError: a pattern that matches no converted layer, or patterns without
            ``recipe.binary_act``.
        UnsupportedError: nothing to convert, a shared layer, ``model`` itself a layer, a
            binary activation in front of the first layer or of a layer kept dense, binary
            activations with ``method="dense"``, or a width multiplier.
    """
    if recipe.width != 1.0:
        raise UnsupportedError(f"a width multiplier ({recipe.width}) applies to zoo models only")
    if isinstance(model, CONVERTED + (MaskedLayer,)):
        raise UnsupportedError(f"the model itself is a single {type(model).__name__}: wrap it in a module")
    candidates, left = _candidates(model)
    if not candidates:
        raise UnsupportedError(f"{type(model).__name__} has no Conv2d or Linear layer to mask")
    specs = {name: _spec(recipe, index, len(candidates)) for index, (name, _) in enumerate(candidates)}
    binary = _binary_inputs(recipe, binary_act_before, candidates, specs)
    with torch.random.fork_rng(devices=[]):  # a layer's constructor draws weights that are then replaced
        for name, layer in candidates:
            spec = specs[name]
            if spec is not None:
                _replace(model, name, _masked(layer, spec, name in binary))
    masked = tuple(name for name, _ in candidates if specs[name] is not None)
    dense = tuple(name for name, _ in candidates if specs[name] is None)
    if recipe.method != "dense":
        _freeze(model, recipe, set(dense))
    return Conversion(masked, dense, tuple(name for name in masked if name in binary), tuple(left))


def _candidates(model: nn.Module) -> tuple[list[tuple[str, nn.Module]], list[tuple[str, str]]]:
    """The layers to convert (exact ``Conv2d``/``Linear``), and the similar ones left with why."""
    names: dict[int, list[str]] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        names.setdefault(id(module), []).append(name)
    candidates: list[tuple[str, nn.Module]] = []
    left: list[tuple[str, str]] = []
    attention_parts = {
        id(child)
        for module in model.modules()
        if isinstance(module, nn.MultiheadAttention)
        for child in module.children()
    }
    for name, module in model.named_modules():
        if isinstance(module, MaskedLayer):
            raise UnsupportedError(f"{name} is already a masked layer: the model was converted before")
        if id(module) in attention_parts:
            left.append((name, "nn.MultiheadAttention reads its projections' weights directly"))
        elif type(module) in CONVERTED:
            if len(names[id(module)]) > 1:
                raise UnsupportedError(
                    f"layer {name} is shared (also registered as {', '.join(names[id(module)][1:])}): "
                    "masking it once would mask both"
                )
            candidates.append((name, module))
        elif isinstance(module, CONVERTED):
            base = "Conv2d" if isinstance(module, nn.Conv2d) else "Linear"
            left.append((name, f"{type(module).__name__} is a subclass of {base} with behaviour of its own"))
        elif isinstance(module, (nn.modules.conv._ConvNd, nn.modules.lazy.LazyModuleMixin)):
            left.append((name, f"{type(module).__name__} is not a Conv2d or Linear"))
    return candidates, left


def _spec(recipe: LayerRecipe, index: int, count: int) -> MaskSpec | None:
    """The layer's spec by position; a lone layer is both first and last."""
    if count == 1:
        return None if recipe.dense_first or recipe.dense_last else recipe.mask_spec("first")
    return recipe.mask_spec("first" if index == 0 else "last" if index == count - 1 else "hidden")


def _binary_inputs(
    recipe: LayerRecipe,
    where: Sequence[str] | LayerPredicate,
    candidates: list[tuple[str, nn.Module]],
    specs: dict[str, MaskSpec | None],
) -> set[str]:
    """The names of the masked layers that get a binary activation in front."""
    patterns: Sequence[str] = () if callable(where) else tuple(where)
    if not recipe.binary_act:
        if callable(where) or patterns:
            raise InputError("binary activation positions were given without binary activations (binary_act)")
        return set()
    if recipe.method == "dense":
        raise UnsupportedError(
            "binary activations of a converted model sit in front of its masked layers, and method dense has none"
        )
    first = candidates[0][0]
    if callable(where):
        chosen = {name for name, layer in candidates if where(name, layer)}
    elif not patterns:
        chosen = {name for name, _ in candidates[1:] if specs[name] is not None}
    else:
        chosen = set()
        for pattern in patterns:
            matched = {name for name, _ in candidates if fnmatch.fnmatchcase(name, pattern)}
            if not matched:
                sample = ", ".join(name for name, _ in candidates[:6])
                raise InputError(
                    f"binary activation pattern {pattern!r} matches no Conv2d/Linear layer (have {sample}, ...)"
                )
            chosen |= matched
    if first in chosen:
        raise UnsupportedError(
            f"{first} is the first layer: the network's input stays real, no binary activation there"
        )
    dense = sorted(name for name in chosen if specs[name] is None)
    if dense:
        raise UnsupportedError(f"binary activations go in front of masked layers; {', '.join(dense)} stays dense")
    return chosen


def _masked(layer: nn.Module, spec: MaskSpec, binary_input: bool) -> MaskedLayer:
    """The masked twin of ``layer``, holding its weight and bias, on its device, in its mode."""
    masked: MaskedLayer
    if isinstance(layer, nn.Conv2d):
        masked = MaskedConv2d(
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size,  # type: ignore[arg-type]
            spec=spec,
            stride=layer.stride,  # type: ignore[arg-type]
            padding=layer.padding,  # type: ignore[arg-type]
            dilation=layer.dilation,  # type: ignore[arg-type]
            groups=layer.groups,
            bias=layer.bias is not None,
            padding_mode=layer.padding_mode,
            binary_input=binary_input,
        )
    else:
        assert isinstance(layer, nn.Linear)
        masked = MaskedLinear(
            layer.in_features, layer.out_features, spec=spec, bias=layer.bias is not None, binary_input=binary_input
        )
    weight = layer.weight.detach()
    masked.to(device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        masked.weight.copy_(weight)
        if layer.bias is not None and masked.bias is not None:
            masked.bias.copy_(layer.bias.detach())
    masked.train(layer.training)
    return masked


def _replace(model: nn.Module, name: str, layer: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, layer)


def _freeze(model: nn.Module, recipe: LayerRecipe, dense: set[str]) -> None:
    """Train scores, the layers kept dense and (with ``learn_bn``) normalisation affines only."""
    for name, module in model.named_modules():
        if isinstance(module, MaskedLayer):
            continue  # its own constructor froze weight and bias; scores train
        trainable = name in dense or (recipe.learn_bn and isinstance(module, NORMS))
        for parameter in module.parameters(recurse=False):
            parameter.requires_grad_(trainable)
