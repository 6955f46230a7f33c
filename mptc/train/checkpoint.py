"""Resumable training state, written atomically each epoch and never unpickled unsafely.

The checkpoint is a ``torch.save`` of tensors and plain containers only, read back with
``weights_only=True``: a file that carries pickled code is refused, not executed.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mptc.errors import InputError, first_line
from mptc.io import write_bytes


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` atomically. Serialised in memory first: ``torch.save`` to a full disk
    raises a bare RuntimeError, where :func:`~mptc.io.write_bytes` reports an OutputError."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no checkpoint at {path}: nothing to resume")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise InputError(
            f"checkpoint {path} is not a plain tensor checkpoint (refusing to unpickle code): {first_line(error)}"
        ) from error
    except Exception as error:  # noqa: BLE001 - on damaged bytes torch.load raises nearly anything (IndexError, KeyError, ...)
        raise InputError(f"checkpoint {path} is corrupt or truncated ({first_line(error)})") from error
    if not isinstance(state, dict) or "epoch" not in state:
        raise InputError(f"checkpoint {path} is not an mptc training checkpoint")
    return state


def restore(
    path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, epochs: int
) -> tuple[list[dict[str, Any]], int]:
    """Load the checkpoint at ``path`` into ``model``, ``optimizer`` and ``scheduler``.

    Returns:
        (history, epochs done).

    Raises:
        InputError: unreadable (see :func:`load_checkpoint`), or the state of another run:
            missing entries, tensors that do not fit ``model``, or past ``epochs``.
    """
    state = load_checkpoint(path)
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history, done = list(state["history"]), int(state["epoch"])
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as error:
        raise InputError(f"checkpoint {path} does not fit this run: {first_line(error)}") from error
    if not 0 <= done <= epochs or len(history) != done:
        raise InputError(
            f"checkpoint {path} says {done} epochs done with {len(history)} recorded, of a run of {epochs}"
        )
    return history, done
