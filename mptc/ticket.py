"""Tickets: a trained strong lottery ticket as seed + packed mask bits + alpha, in safetensors.

Masked layers' weights are a pure function of (seed, architecture, init) and are not stored;
their masks are stored bit-packed (:mod:`mptc.conventions`), one ``uint8`` per 8 weights, with
alpha for verification. Everything else the model needs (BatchNorm statistics, dense layers,
pre-trained weights a jackpot was searched in) is stored as ordinary tensors.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from mptc.config import PRETRAINED_METHODS, TrainConfig, parse_config
from mptc.conventions import pack_bits, unpack_bits
from mptc.errors import InputError
from mptc.io import write_bytes
from mptc.models import build_model
from mptc.nn.init import initialize
from mptc.nn.layers import masked_layers

FORMAT = "mptc-ticket/1"
MASK_SUFFIX, ALPHA_SUFFIX = ".mask_bits", ".alpha"
ALPHA_RTOL = 1e-5


def ticket_tensors(model: nn.Module, store_weights: bool) -> dict[str, torch.Tensor]:
    """The tensors a ticket holds for ``model`` (weights of masked layers only if ``store_weights``)."""
    masked = dict(masked_layers(model))
    skip = {f"{name}.scores" for name in masked}
    if not store_weights:
        skip |= {f"{name}.weight" for name in masked}
    tensors = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items() if key not in skip}
    for name, layer in masked.items():
        bits = pack_bits(layer.mask().bool().cpu().numpy().reshape(-1))
        tensors[name + MASK_SUFFIX] = torch.from_numpy(bits)
        tensors[name + ALPHA_SUFFIX] = layer.alpha().detach().float().cpu().reshape(-1)
    return tensors


def save_ticket(
    model: nn.Module,
    config: TrainConfig,
    path: str | Path,
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    store_weights: bool = False,
) -> int:
    """Write the ticket atomically; returns its size in bytes.

    The model's input shape and class count are recorded, so the ticket rebuilds its model
    without reading the data set it was trained on.
    """
    metadata = {
        "format": FORMAT,
        "config": config.dumps(),
        "weights": "stored" if store_weights else "seed",
        "input_shape": json.dumps(list(input_shape)),
        "num_classes": str(num_classes),
    }
    data = save_safetensors(ticket_tensors(model, store_weights), metadata=metadata)
    write_bytes(path, data)
    return len(data)


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    if not path.is_file():
        raise InputError(f"ticket {path} does not exist")
    raw = path.read_bytes()
    try:
        tensors = load_safetensors(raw)
        header_len = int.from_bytes(raw[:8], "little")
        metadata = json.loads(raw[8 : 8 + header_len]).get("__metadata__", {})
    except (SafetensorError, ValueError, json.JSONDecodeError) as error:
        raise InputError(f"ticket {path} is corrupt or truncated ({error})") from error
    if metadata.get("format") != FORMAT:
        raise InputError(f"{path} is not an mptc ticket (format {metadata.get('format')!r}, expected {FORMAT!r})")
    return tensors, metadata


def _signature(metadata: dict[str, str], path: Path) -> tuple[tuple[int, ...], int]:
    try:
        shape = tuple(int(d) for d in json.loads(metadata["input_shape"]))
        classes = int(metadata["num_classes"])
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(f"ticket {path} does not record its input shape and class count ({error})") from error
    if not shape or min(shape) < 1 or classes < 1:
        raise InputError(f"ticket {path} records an impossible input shape {shape} or class count {classes}")
    return shape, classes


def ticket_signature(path: str | Path) -> tuple[tuple[int, ...], int]:
    """``(input_shape, num_classes)`` of the model a ticket holds."""
    path = Path(path)
    return _signature(_read(path)[1], path)


def load_ticket(path: str | Path, device: str = "cpu") -> tuple[nn.Module, TrainConfig]:
    """Rebuild the model of a ticket, bit-exactly: regenerate weights from the seed, apply masks.

    Raises:
        InputError: missing/corrupt file, or masks/alpha that do not fit the regenerated weights
            (a ticket saved by another architecture, seed or version).
    """
    path = Path(path)
    tensors, metadata = _read(path)
    config = parse_config(metadata.get("config", ""), f"ticket {path}'s config")
    input_shape, num_classes = _signature(metadata, path)
    model = build_model(config.model, config.recipe, input_shape, num_classes)
    initialize(model, config.seed, config.init or "kaiming-normal")
    masked = dict(masked_layers(model))
    plain = {key: value for key, value in tensors.items() if not key.endswith((MASK_SUFFIX, ALPHA_SUFFIX))}
    try:
        missing, unexpected = model.load_state_dict(plain, strict=False)
        for name, layer in masked.items():
            bits = tensors[name + MASK_SUFFIX].numpy()
            mask = unpack_bits(bits, layer.weight.numel()).reshape(layer.weight.shape)
            if config.method in PRETRAINED_METHODS:
                # per-layer counts came from a global magnitude threshold, not from the sparsity
                layer.set_kept(int(mask.sum()))
            layer.set_mask(torch.from_numpy(mask.astype(np.float32)))
    except (KeyError, ValueError, RuntimeError) as error:
        raise InputError(f"ticket {path} does not fit model {config.model}: {error}") from error
    expected_missing = {f"{n}.scores" for n in masked} | (
        {f"{n}.weight" for n in masked} if metadata.get("weights") == "seed" else set()
    )
    if set(missing) - expected_missing or unexpected:
        raise InputError(
            f"ticket {path} does not fit model {config.model}: missing {sorted(set(missing) - expected_missing)}, unexpected {sorted(unexpected)}"
        )
    for name, layer in masked.items():
        stored = tensors[name + ALPHA_SUFFIX]
        if not torch.allclose(layer.alpha().reshape(-1), stored, rtol=ALPHA_RTOL, atol=0):
            raise InputError(
                f"ticket {path}: layer {name} alpha does not match the weights regenerated from seed {config.seed}"
            )
    return model.to(device).eval(), config


def fp32_bytes(model: nn.Module) -> int:
    """Size of the model as an fp32 checkpoint of its weights (scores excluded)."""
    masked = {f"{name}.scores" for name, _ in masked_layers(model)}
    return sum(v.numel() * 4 for k, v in model.state_dict().items() if k not in masked and v.is_floating_point())
