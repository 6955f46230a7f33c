"""The pre-trained model a jackpot searches in: loaded as our architecture, then copied over.

``--pretrained`` names a ``--method dense`` run directory, its ``ticket.safetensors``, or a
plain safetensors state dict of one of our architectures (keys as ``model.state_dict()``); for a
user's model (``--model package.module:Factory``), that model's state dict (safetensors, or
``torch.save`` read with ``weights_only=True``).
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

from mptc.config import TrainConfig, is_import_path
from mptc.data import Dataset
from mptc.errors import InputError
from mptc.models import LayerRecipe, build_model
from mptc.models.weights import fit_problems, listed, read_state_dict, state_sha256
from mptc.nn.layers import masked_layers
from mptc.ticket import READABLE_FORMATS, load_ticket
from mptc.train.rundir import RunDir


def _ticket_or_state(path: Path) -> tuple[dict[str, torch.Tensor], TrainConfig | None]:
    """Tensors of ``path`` and, for an mptc ticket, the config of the run that made it."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        if metadata.get("format") in READABLE_FORMATS:
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


def _user_state(source: str, config: TrainConfig) -> dict[str, torch.Tensor]:
    """A user's model's state dict file, checked against the hash the run recorded (if any)."""
    state = read_state_dict(source)
    digest = state_sha256(state)
    if config.pretrained_sha256 is not None and digest != config.pretrained_sha256:
        raise InputError(
            f"--pretrained {source} holds weights of sha256 {digest}, but this run searches in sha256 {config.pretrained_sha256}"
        )
    return state


def load_pretrained(source: str, config: TrainConfig, dataset: Dataset) -> nn.Module:
    """The dense pre-trained model ``source`` names, as architecture ``config.model`` (eval mode).

    For a user's model (an import path), ``source`` is its state dict, safetensors or
    ``torch.save`` (read with ``weights_only=True``), of the hash in ``config.pretrained_sha256``
    when that is set.

    Raises:
        InputError: ``source`` is missing or unreadable, is not a dense run, holds weights of
            another hash, or does not fit the architecture (the first mismatches are named).
    """
    recipe = LayerRecipe(
        method="dense", width=config.width, binary_act=config.binary_act and not is_import_path(config.model)
    )
    model = build_model(
        config.model,
        recipe,
        dataset.input_shape,
        dataset.num_classes,
        model_args=config.model_args,
        seed=config.seed,
    )
    if is_import_path(config.model):
        state = _user_state(source, config)
        described = f"{config.model}(**{config.model_args})"
    else:
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
        described = f"a dense {config.model} of width {config.width} on {dataset.name}"
    problems = fit_problems(model, state)
    if problems:
        raise InputError(f"--pretrained {source} does not fit {described}: {listed(problems)}")
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
