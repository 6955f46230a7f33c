"""Emulated boards: a TVM RPC server running under qemu-user with the board's own CPU model.

Why: an ARM module must run for real (load, execute, match the reference) before a board is at
hand. ``scripts/setup_arm_emulator.sh`` prepares an aarch64 Python with a runtime-only TVM under
``$MPTC_ARM_ROOT`` (default ``<repo>/.arm``); ``QEMU_CPU`` then gives the guest exactly the
instructions of the board's core, so a module using an instruction the board lacks dies with
SIGILL here as it would on the board. Emulated latency is 40-60x the board's and only a smoke
figure: every report labels it ``emulated``.

The server's private folder is named ``mptc-emulated-<board>-...`` and a client reads it back
through TVM's standard ``tvm.rpc.server.workpath`` function: a report is labelled emulated even
when the user reached the server with a plain ``--rpc HOST:PORT``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from mptc.boards import BOARDS, Board
from mptc.deploy.server import RpcServer
from mptc.errors import DeviceError, InputError

SETUP_SCRIPT = "scripts/setup_arm_emulator.sh"
SETUP_COMMAND = "make arm-emulator"  # runs SETUP_SCRIPT with the venv's python; `make demo` does not
_MARKER = "mptc-emulated-"


def get_board(name: str) -> Board:
    """The board called ``name``; a clear error naming the choices otherwise."""
    try:
        return BOARDS[name]
    except KeyError as e:
        raise InputError(f"unknown board '{name}': expected one of {', '.join(BOARDS)}") from e


def arm_root() -> Path:
    """Where the emulation lives: ``$MPTC_ARM_ROOT``, else ``.arm/`` in the repository."""
    env = os.environ.get("MPTC_ARM_ROOT")
    return Path(env) if env else Path(__file__).resolve().parents[2] / ".arm"


def launcher() -> Path:
    """The emulated aarch64 Python; a clear error when the set-up has not been run."""
    path = arm_root() / "bin" / "python3-aarch64"
    if not os.access(path, os.X_OK) or not (arm_root() / ".ready").is_file():
        raise DeviceError(
            f"ARM emulation is not set up (no {path}): run `{SETUP_COMMAND}` in the repository (it runs {SETUP_SCRIPT})"
        )
    if shutil.which("qemu-aarch64") is None:
        raise DeviceError(
            f"qemu-aarch64 is not installed: run `{SETUP_COMMAND}` in the repository (it installs qemu-user)"
        )
    return path


def emulated_board(
    name: str,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    tracker: str | None = None,
    key: str = "",
    capture_log: bool = True,
) -> RpcServer:
    """An RPC server that behaves like board ``name`` (use it as a context manager).

    Args:
        name: a board of :data:`mptc.boards.BOARDS` (``rpi4``, ``rpi5``, ``jetson-orin``).
        host: address to bind (loopback by default: an emulator is a local test device).
        port: port to bind; ``None`` picks a free one.
        tracker: ``HOST:PORT`` of a TVM tracker to register with, under ``key``.
        key: the tracker key (e.g. ``rpi4``).
        capture_log: keep the server's output in a log (needed to report a SIGILL's cause).
    """
    board = get_board(name)
    return RpcServer(
        [launcher()],
        host=host,
        port=port,
        tracker=tracker,
        key=key,
        env={"QEMU_CPU": board.qemu_cpu},
        work_prefix=f"{_MARKER}{board.name}-",
        capture_log=capture_log,
    )


def board_from_workpath(path: str) -> Board | None:
    """The emulated board behind a server, read from a path its ``tvm.rpc.server.workpath`` returned."""
    for board in BOARDS.values():
        if f"/{_MARKER}{board.name}-" in path:
            return board
    return None


def missing_features(board: Board, mattr: list[str]) -> list[str]:
    """The ``+feature`` entries of a target's mattr that the board's core does not implement."""
    return [attr for attr in mattr if attr.startswith("+") and attr[1:] not in board.features]
