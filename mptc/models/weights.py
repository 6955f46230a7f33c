"""Pre-trained weights: read safely, identified by content, loaded onto a (masked) model.

A state dict is read from safetensors, or from a ``torch.save`` file with
``torch.load(weights_only=True)``: a file that carries pickled code is refused, never executed.

Its identity is :func:`state_sha256`, a hash of the tensors' content rather than of the file's
bytes, so the same weights saved as ``.safetensors`` or ``.pt`` (or re-saved with other metadata)
have one hash, and a ticket searched in them can say exactly which weights it needs.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from mptc.errors import InputError, first_line
from mptc.nn.layers import masked_layers

MAX_LISTED = 3
SAFETENSORS_SUFFIX = ".safetensors"


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a state dict file: ``.safetensors``, or anything else as ``torch.save`` output.

    A ``torch.save`` file may hold the state dict itself or a checkpoint with it under
    ``"state_dict"`` or ``"model"`` (the usual training-script layouts).

    Raises:
        InputError: missing, unreadable, pickled code, or not a mapping of names to tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"pre-trained weights {path} do not exist")
    if path.suffix == SAFETENSORS_SUFFIX:
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as error:
            raise InputError(f"pre-trained weights {path} are not a readable safetensors file ({error})") from error
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise InputError(
            f"pre-trained weights {path} are not a plain tensor file (refusing to unpickle code): {first_line(error)}"
        ) from error
    except Exception as error:  # noqa: BLE001 - on damaged bytes torch.load raises nearly anything
        raise InputError(
            f"pre-trained weights {path} are corrupt or not a torch.save file ({first_line(error)})"
        ) from error
    for key in ("state_dict", "model"):
        if isinstance(loaded, Mapping) and isinstance(loaded.get(key), Mapping):
            loaded = loaded[key]
            break
    if not isinstance(loaded, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()
    ):
        raise InputError(f"pre-trained weights {path} are not a state dict (a mapping of names to tensors)")
    return dict(loaded)


def state_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """Hex sha256 of a state dict's content: per key in sorted order, the key, dtype, shape and
    the tensor's bytes (CPU, contiguous). The file format and the keys' order do not change it."""
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(f"{key}\0{tensor.dtype}\0{list(tensor.shape)}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def fit_problems(model: nn.Module, state: Mapping[str, torch.Tensor], ignore: set[str] | None = None) -> list[str]:
    """Why ``state`` does not load strictly into ``model`` (keys in ``ignore`` may be missing)."""
    expected = model.state_dict()
    ignore = ignore or set()
    problems = [f"missing {key}" for key in expected if key not in state and key not in ignore]
    problems += [f"unexpected {key}" for key in state if key not in expected]
    problems += [
        f"{key} has shape {tuple(state[key].shape)}, expected {tuple(value.shape)}"
        for key, value in expected.items()
        if key in state and state[key].shape != value.shape
    ]
    return problems


def listed(problems: list[str]) -> str:
    """The first problems, and how many more."""
    more = len(problems) - MAX_LISTED
    return "; ".join(problems[:MAX_LISTED]) + (f" (and {more} more)" if more > 0 else "")


def load_weights(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load every tensor of ``state`` into ``model``; only masked layers' scores may be absent.

    Masked layers keep the ``weight``/``bias`` keys of the layers they replaced, so the state
    dict of the unpruned model loads as it is.

    Raises:
        InputError: a key missing, unexpected or of another shape (the first ones are named).
    """
    scores = {f"{name}.scores" for name, _ in masked_layers(model)}
    problems = fit_problems(model, state, ignore=scores)
    if problems:
        raise InputError(f"{source} does not fit the model: {listed(problems)}")
    model.load_state_dict(dict(state), strict=False)
