"""Resumable training state, written atomically each epoch and never unpickled unsafely.

The checkpoint is a ``torch.save`` of tensors and plain containers only, read back with
``weights_only=True``: a file that carries pickled code is refused, not executed.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from mptc.errors import InputError
from mptc.io import atomic_path


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no checkpoint at {path}: nothing to resume")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise InputError(f"checkpoint {path} is not a plain tensor checkpoint (refusing to unpickle code): {str(error).splitlines()[0]}") from error
    except (RuntimeError, EOFError, ValueError, OSError) as error:
        raise InputError(f"checkpoint {path} is corrupt or truncated ({str(error).splitlines()[0]})") from error
    if not isinstance(state, dict) or "epoch" not in state:
        raise InputError(f"checkpoint {path} is not an mptc training checkpoint")
    return state
