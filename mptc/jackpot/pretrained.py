"""The pre-trained model a jackpot searches in: loaded as our architecture, then copied over.

``--pretrained`` names a ``--method dense`` run directory, its ``ticket.safetensors``, or a
plain safetensors state dict of one of our architectures (keys as ``model.state_dict()``).
The dense model is rebuilt and loaded strictly, so a model of another architecture, width or
data set is refused with the reason, before any search starts. Its tensors are then copied onto
the masked model (dense layer ``weight`` -> masked layer ``weight``, BatchNorm running
statistics and affine as they are): the search runs on the pre-trained weights, never on the
random ones the model was built with (the reference's CIFAR path rebuilds the model after
loading its checkpoint and so searches random weights).
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import nn

from mptc.config import TrainConfig
from mptc.data import Dataset
from mptc.errors import InputError
from mptc.models import LayerRecipe, build_model
from mptc.nn.layers import masked_layers
from mptc.ticket import FORMAT as TICKET_FORMAT
from mptc.ticket import load_ticket
from mptc.train.rundir import RunDir

MAX_LISTED = 3


def _ticket_or_state(path: Path) -> tuple[dict[str, torch.Tensor], TrainConfig | None]:
    """Tensors of ``path`` and, for an mptc ticket, the config of the run that made it."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        if metadata.get("format") == TICKET_FORMAT:
            model, config = load_ticket(path)
            return model.state_dict(), config
        return load_file(str(path)), None
    except (SafetensorError, OSError, ValueError) as error:
        raise InputError(f"--pretrained {path} is not a readable safetensors file ({error})") from error


def _check_source_run(source: str, pretrained: TrainConfig, config: TrainConfig) -> None:
    if pretrained.method != "dense":
        raise InputError(
            f"--pretrained {source} is a --method {pretrained.method} run; a jackpot searches inside a dense pre-trained model (--method dense)"
        )
    theirs = (pretrained.model, pretrained.width, pretrained.dataset)
    ours = (config.model, config.width, config.dataset)
    if theirs != ours:
        raise InputError(
            f"--pretrained {source} is a {theirs[0]} of width {theirs[1]} trained on {theirs[2]}; "
            f"this run is a {ours[0]} of width {ours[1]} on {ours[2]}"
        )


def _fit_problems(model: nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    expected = model.state_dict()
    problems = [f"missing {key}" for key in expected if key not in state]
    problems += [f"unexpected {key}" for key in state if key not in expected]
    problems += [
        f"{key} has shape {tuple(state[key].shape)}, expected {tuple(value.shape)}"
        for key, value in expected.items()
        if key in state and state[key].shape != value.shape
    ]
    return problems


def load_pretrained(source: str, config: TrainConfig, dataset: Dataset) -> nn.Module:
    """The dense pre-trained model ``source`` names, as architecture ``config.model`` (eval mode).

    Raises:
        InputError: ``source`` is missing or unreadable, is not a dense run, or does not fit
            the architecture (the first mismatches are named).
    """
    path = Path(source)
    if path.is_dir():
        path = RunDir(path).ticket
        if not path.is_file():
            raise InputError(f"--pretrained {source} has no ticket.safetensors: not a finished mptc run")
    if not path.is_file():
        raise InputError(f"--pretrained {source} does not exist")
    state, pretrained = _ticket_or_state(path)
    if pretrained is not None:
        _check_source_run(source, pretrained, config)
    recipe = LayerRecipe(method="dense", width=config.width, binary_act=config.binary_act)
    model = build_model(config.model, recipe, dataset.input_shape, dataset.num_classes)
    problems = _fit_problems(model, state)
    if problems:
        listed = "; ".join(problems[:MAX_LISTED]) + (
            f" (and {len(problems) - MAX_LISTED} more)" if len(problems) > MAX_LISTED else ""
        )
        raise InputError(
            f"--pretrained {source} does not fit a dense {config.model} of width {config.width} on {dataset.name}: {listed}"
        )
    model.load_state_dict(state)
    return model.eval()


def copy_pretrained(dense: nn.Module, model: nn.Module) -> None:
    """Copy every tensor of ``dense`` onto ``model`` of the same architecture with masked layers.

    Raises:
        InputError: the two differ in anything but the masked layers' scores.
    """
    scores = {f"{name}.scores" for name, _ in masked_layers(model)}
    missing, unexpected = model.load_state_dict(dense.state_dict(), strict=False)
    if set(missing) != scores or unexpected:
        raise InputError(
            f"pre-trained model does not map onto the masked model: missing {sorted(set(missing) - scores)}, unexpected {sorted(unexpected)}"
        )
