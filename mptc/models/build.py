"""The model a :class:`~mptc.config.TrainConfig` describes, with its initial weights: one function,
used where training starts and where a ticket is rebuilt, so the two cannot drift apart."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from mptc.config import TrainConfig, is_import_path
from mptc.errors import InputError, first_line
from mptc.models import build_model
from mptc.models.weights import load_weights
from mptc.nn.init import initialize, initialize_scores

CHECK_BATCH = 2


def build_from_config(
    config: TrainConfig,
    input_shape: tuple[int, ...],
    num_classes: int,
    weights: Mapping[str, torch.Tensor] | None = None,
    source: str = "pre-trained weights",
) -> nn.Module:
    """``config``'s model: weights from ``weights`` (a state dict of the unpruned model, named
    ``source`` in errors) with seeded scores, or every parameter drawn from ``config.seed``.

    A user's model is run once on zeros of ``input_shape`` to check that it gives
    ``num_classes`` logits, so a mismatch with the data set fails here, not mid-epoch.

    Raises:
        InputError: ``weights`` that do not fit, or a user's model whose output does not fit.
    """
    model = build_model(
        config.model,
        config.recipe,
        input_shape,
        num_classes,
        model_args=config.model_args,
        binary_act_before=config.binary_act_before,
        seed=config.seed,
    )
    if weights is not None:
        load_weights(model, weights, source)
        initialize_scores(model, config.seed)
    else:
        initialize(model, config.seed, config.init or "kaiming-normal")
    if is_import_path(config.model):
        check_outputs(model, config.model, input_shape, num_classes)
    return model


@torch.no_grad()
def check_outputs(model: nn.Module, name: str, input_shape: tuple[int, ...], num_classes: int) -> None:
    """Raise :class:`InputError` unless ``model`` maps a batch of ``input_shape`` to ``(batch, num_classes)``."""
    training = model.training
    model.eval()
    try:
        output = model(torch.zeros(CHECK_BATCH, *input_shape))
    except Exception as error:  # noqa: BLE001 - the user's forward can raise anything
        raise InputError(
            f"model {name} does not take inputs of shape {tuple(input_shape)}: {first_line(error)}"
        ) from error
    finally:
        model.train(training)
    if not isinstance(output, torch.Tensor) or tuple(output.shape) != (CHECK_BATCH, num_classes):
        got = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise InputError(
            f"model {name} maps inputs of shape {tuple(input_shape)} to {got}; the data set needs "
            f"(batch, {num_classes}) logits"
        )
