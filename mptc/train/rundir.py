"""The layout of a run directory (``--out runs/NAME``)."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mptc.errors import OutputError


@dataclass(frozen=True)
class RunDir:
    """Files of one training run.

    * ``config.json``: the resolved :class:`~mptc.config.TrainConfig`.
    * ``checkpoint.pt``: the last finished epoch (scores, optimizer, schedule, history).
    * ``ticket.safetensors``: the result (seed + mask bits + alpha, see :mod:`mptc.ticket`).
    * ``metrics.json``: test accuracy, sparsity, method, sizes and per-epoch curves.
    """

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoint.pt"

    @property
    def ticket(self) -> Path:
        return self.root / "ticket.safetensors"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    def has_run(self) -> bool:
        return self.checkpoint.exists() or self.ticket.exists()


@contextlib.contextmanager
def exclusive(root: Path) -> Iterator[None]:
    """Hold ``root`` (created if missing) for one training process: a second ``mptc train`` into
    the same folder is refused instead of overwriting the first one's files. The lock is the
    kernel's (``flock`` on the folder), so a killed run leaves none behind; a folder created here
    and left empty by a failure is removed."""
    created = not root.exists()
    try:
        root.mkdir(parents=True, exist_ok=True)
        handle = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as error:
        raise OutputError(f"cannot write {root}: {error.strerror or error}") from error
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputError(
                f"another mptc train is writing to {root}: wait for it, or choose another --out"
            ) from None
        try:
            yield
        except BaseException:
            if created and not any(root.iterdir()):
                root.rmdir()
            raise
    finally:
        os.close(handle)
