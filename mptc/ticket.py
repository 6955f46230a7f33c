"""Tickets: a trained strong lottery ticket as seed + packed mask bits + alpha, in safetensors.

Masked layers' weights are a pure function of (seed, architecture, init) and are not stored;
their masks are stored bit-packed (:mod:`mptc.conventions`), one ``uint8`` per 8 weights, with
alpha for verification. Everything else the model needs (BatchNorm statistics, dense layers,
biases, the pre-trained weights a zoo jackpot was searched in) is stored as ordinary tensors.

The metadata holds the format, the run's :class:`~mptc.config.TrainConfig` (JSON), the input
shape and class count, and ``weights``, where the masked layers' weights come from
(:data:`WEIGHTS`): ``seed`` (drawn again), ``stored`` (in the ticket) or ``pretrained``: a user's
pre-trained weights, not stored but named by the config's ``pretrained`` path and identified by
its ``pretrained_sha256`` (:func:`mptc.models.weights.state_sha256`); loading the ticket reads
them again and refuses weights of another hash. A user's model itself is rebuilt from the
config's import path and ``model_args`` (:mod:`mptc.models.user`).

Format ``mptc-ticket/2`` added user models and ``pretrained`` weights; ``mptc-ticket/1`` tickets
(zoo models) still load.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from mptc.config import MAX_INPUT_VALUES, PRETRAINED_METHODS, TrainConfig, parse_config
from mptc.conventions import pack_bits, unpack_bits
from mptc.errors import InputError
from mptc.io import read_regular_file, write_bytes
from mptc.models.build import build_from_config
from mptc.models.weights import read_state_dict, state_sha256
from mptc.nn.layers import masked_layers

FORMAT = "mptc-ticket/2"
READABLE_FORMATS = ("mptc-ticket/1", FORMAT)
WEIGHTS = ("seed", "stored", "pretrained")
MASK_SUFFIX, ALPHA_SUFFIX = ".mask_bits", ".alpha"
ALPHA_RTOL = 1e-5
MAX_TICKET_BYTES = 2**32  # read whole: a ticket is ~1 bit per weight, pre-trained weights stored 4 bytes
MAX_CLASSES = 2**20


def ticket_tensors(model: nn.Module, weights: str = "seed") -> dict[str, torch.Tensor]:
    """The tensors a ticket holds for ``model``: masked layers' weights only if ``weights`` is ``stored``."""
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
    masked = dict(masked_layers(model))
    skip = {f"{name}.scores" for name in masked}
    if weights != "stored":
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
    weights: str = "seed",
) -> int:
    """Write the ticket atomically; returns its size in bytes.

    The model's input shape and class count are recorded, so the ticket rebuilds its model
    without reading the data set it was trained on. ``weights`` says where the masked layers'
    weights come from (:data:`WEIGHTS`); ``pretrained`` needs ``config.pretrained_sha256``.
    """
    if weights == "pretrained" and config.pretrained_sha256 is None:
        raise ValueError("a ticket over pre-trained weights needs their hash (config.pretrained_sha256)")
    metadata = {
        "format": FORMAT,
        "config": json.dumps(config.to_json(), sort_keys=True, separators=(",", ":")),  # compact: tickets are small
        "weights": weights,
        "input_shape": json.dumps(list(input_shape)),
        "num_classes": str(num_classes),
    }
    data = _canonical_header(save_safetensors(ticket_tensors(model, weights), metadata=metadata))
    write_bytes(path, data)
    return len(data)


def _canonical_header(data: bytes) -> bytes:
    """``data`` with its safetensors header's keys in sorted order, so the same ticket is the
    same bytes: safetensors writes the metadata from a Rust ``HashMap``, whose order changes from
    one map to the next. The header keeps its length (the tensors' offsets count from its end);
    serialized the way safetensors does (compact, UTF-8), the same keys take the same bytes."""
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    ordered = {key: header[key] for key in sorted(header)}
    if "__metadata__" in ordered:
        ordered["__metadata__"] = dict(sorted(ordered["__metadata__"].items()))
    text = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode()
    if len(text) > size:  # never: the same keys and values; kept as written rather than risk the offsets
        return data
    return data[:8] + text.ljust(size) + data[8 + size :]


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    if not path.exists():
        raise InputError(f"ticket {path} does not exist")
    raw = read_regular_file(path, MAX_TICKET_BYTES, "ticket")
    try:
        tensors = load_safetensors(raw)
        header_len = int.from_bytes(raw[:8], "little")
        metadata = json.loads(raw[8 : 8 + header_len]).get("__metadata__", {})
    except (SafetensorError, ValueError, json.JSONDecodeError) as error:
        raise InputError(f"ticket {path} is corrupt or truncated ({error})") from error
    if metadata.get("format") not in READABLE_FORMATS:
        raise InputError(
            f"{path} is not an mptc ticket this version reads (format {metadata.get('format')!r}, "
            f"expected one of {', '.join(READABLE_FORMATS)})"
        )
    if metadata.get("weights", "seed") not in WEIGHTS:
        raise InputError(f"ticket {path} takes its weights from {metadata.get('weights')!r}, not one of {WEIGHTS}")
    return tensors, metadata


def _signature(metadata: dict[str, str], path: Path) -> tuple[tuple[int, ...], int]:
    try:
        shape = tuple(int(d) for d in json.loads(metadata["input_shape"]))
        classes = int(metadata["num_classes"])
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(f"ticket {path} does not record its input shape and class count ({error})") from error
    if not shape or min(shape) < 1 or classes < 1 or math.prod(shape) > MAX_INPUT_VALUES or classes > MAX_CLASSES:
        raise InputError(f"ticket {path} records an impossible input shape {shape} or class count {classes}")
    return shape, classes


def ticket_signature(path: str | Path) -> tuple[tuple[int, ...], int]:
    """``(input_shape, num_classes)`` of the model a ticket holds."""
    path = Path(path)
    return _signature(_read(path)[1], path)


def _pretrained_weights(
    path: Path, config: TrainConfig, pretrained: str | Path | None
) -> tuple[dict[str, torch.Tensor], str]:
    """The pre-trained weights a ticket names, checked against its hash; and where they were read."""
    source = pretrained if pretrained is not None else config.pretrained
    if source is None:
        raise InputError(
            f"ticket {path} masks pre-trained weights (sha256 {config.pretrained_sha256}) and names no file: pass them"
        )
    try:
        state = read_state_dict(source)
    except InputError as error:
        raise InputError(
            f"ticket {path} needs its pre-trained weights (sha256 {config.pretrained_sha256}): {error}"
        ) from error
    digest = state_sha256(state)
    if digest != config.pretrained_sha256:
        raise InputError(
            f"ticket {path} was trained over pre-trained weights of sha256 {config.pretrained_sha256}, "
            f"but {source} holds weights of sha256 {digest}"
        )
    return state, str(source)


def load_ticket(
    path: str | Path, device: str = "cpu", pretrained: str | Path | None = None
) -> tuple[nn.Module, TrainConfig]:
    """Rebuild the model of a ticket, bit-exactly: regenerate weights from the seed (or read the
    pre-trained weights it names), apply masks.

    Args:
        pretrained: for a ticket over a user's pre-trained weights, where they are now (default:
            the path recorded at training time); their content hash must match.

    Raises:
        InputError: missing/corrupt file, masks/alpha that do not fit the regenerated weights
            (a ticket saved by another architecture, seed or version), a user's model that
            does not import, or pre-trained weights that are missing or of another hash (both
            hashes are named).
    """
    path = Path(path)
    tensors, metadata = _read(path)
    for key, value in tensors.items():
        expected = torch.uint8 if key.endswith(MASK_SUFFIX) else torch.float32 if key.endswith(ALPHA_SUFFIX) else None
        if expected is not None and value.dtype != expected:
            raise InputError(f"ticket {path}: {key} is {value.dtype}, expected {expected}")
    config = parse_config(metadata.get("config", ""), f"ticket {path}'s config")
    input_shape, num_classes = _signature(metadata, path)
    weights, source = None, "pre-trained weights"
    if metadata.get("weights") == "pretrained":
        weights, source = _pretrained_weights(path, config, pretrained)
    model = build_from_config(config, input_shape, num_classes, weights, source)
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
        {f"{n}.weight" for n in masked} if metadata.get("weights", "seed") != "stored" else set()
    )
    if set(missing) - expected_missing or unexpected:
        raise InputError(
            f"ticket {path} does not fit model {config.model}: missing {sorted(set(missing) - expected_missing)}, unexpected {sorted(unexpected)}"
        )
    for name, layer in masked.items():
        stored = tensors[name + ALPHA_SUFFIX]
        if not torch.allclose(layer.alpha().reshape(-1), stored, rtol=ALPHA_RTOL, atol=0):
            raise InputError(
                f"ticket {path}: layer {name} alpha does not match the weights "
                + (f"of {source}" if weights is not None else f"regenerated from seed {config.seed}")
            )
    return model.to(device).eval(), config


def fp32_bytes(model: nn.Module) -> int:
    """Size of the model as an fp32 checkpoint of its weights (scores excluded)."""
    masked = {f"{name}.scores" for name, _ in masked_layers(model)}
    return sum(v.numel() * 4 for k, v in model.state_dict().items() if k not in masked and v.is_floating_point())
