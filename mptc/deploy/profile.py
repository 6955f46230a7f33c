"""Profile a compiled model on a device and write OUT/profile.json.

The module runs the reference input once (its output must match ``reference.npz``: relative error
``max|out - y| / max|y| <= 1e-4`` and the same argmax), then is timed with TVM's
``time_evaluator`` on the device itself. Latency measured under qemu is 40-60x the board's and is
labelled ``"emulated": true`` in every report. ``profile.json`` is written once, atomically, at
the very end; a stale one is removed first, so a failed run never leaves a report that looks
complete.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import signal
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from mptc import __version__
from mptc.boards import Board
from mptc.deploy import emulator
from mptc.deploy.artifact import CompiledModel, host_arch, load_compiled
from mptc.deploy.rpc import Device, Measurement, connect, is_lost_connection, run_module
from mptc.deploy.server import RpcServer
from mptc.errors import DeviceError, InputError, OutputError
from mptc.hostinfo import cpuinfo

logger = logging.getLogger(__name__)

PROFILE = "profile.json"
REL_TOLERANCE = 1e-4
EMULATED_NOTE = "run under qemu-user emulation: latency is a smoke figure (40-60x the board's), not the board's speed"


def profile(
    out_dir: str | Path,
    rpc: str | None = None,
    tracker: str | None = None,
    key: str | None = None,
    repeat: int = 10,
    emulated_board: str | None = None,
    number: int = 1,
) -> dict[str, Any]:
    """Run OUT/module.so on a device, check it against the reference, time it, write profile.json.

    Args:
        out_dir: the output folder of ``mptc compile``.
        rpc: ``HOST:PORT`` of a TVM RPC server (e.g. ``mptc serve-device`` on the board).
        tracker: ``HOST:PORT`` of a TVM tracker; with ``key``, the kind of board to request.
        key: tracker key (e.g. ``rpi4``).
        repeat: timed repeats; the report gives their median, min and max.
        emulated_board: ``rpi4``/``rpi5``/``jetson-orin``: without ``rpc``/``tracker``, start that
            emulated board here for the run; with them, state that the server is such an emulator.
        number: runs averaged inside each repeat (raise it for sub-millisecond models on a board).

    Returns:
        The report written to ``OUT/profile.json``.
    """
    if repeat < 1 or number < 1:
        raise InputError(f"repeat and number must be at least 1, got repeat={repeat} number={number}")
    compiled = load_compiled(out_dir)
    board = emulator.get_board(emulated_board) if emulated_board else None
    report_path = compiled.out_dir / PROFILE
    report_path.unlink(missing_ok=True)
    if board is not None and not (rpc or tracker):
        device, measurement = _profile_on_own_emulator(compiled, board, repeat, number)
    else:
        device = connect(rpc=rpc, tracker=tracker, key=key)
        if board is not None and device.emulated_board not in (None, board):
            logger.warning("--emulate %s, but the server emulates %s", board.name, device.emulated_board.name)
        board = device.emulated_board or board
        _check_arch(compiled, device, board)
        measurement = _run(device, compiled, board, repeat, number, server=None)
    report = _report(compiled, device, board, measurement, repeat, number)
    _write_atomically(report, report_path)
    logger.info("wrote %s", report_path)
    return report


def _profile_on_own_emulator(
    compiled: CompiledModel, board: Board, repeat: int, number: int
) -> tuple[Device, Measurement]:
    """Start the emulated board, run there, and stop it; its log tells a crash's cause."""
    if compiled.arch != "aarch64":
        raise _arch_mismatch(compiled, "aarch64", f"the emulated {board.description}")
    with emulator.emulated_board(board.name) as server:
        device = dataclasses.replace(connect(rpc=server.address), connection="emulator")
        return device, _run(device, compiled, board, repeat, number, server=server)


def _run(
    device: Device, compiled: CompiledModel, board: Board | None, repeat: int, number: int, server: RpcServer | None
) -> Measurement:
    """:func:`run_module`, with a crash of the device's process explained where the cause is known."""
    try:
        return run_module(device, compiled, repeat=repeat, number=number)
    except DeviceError as e:
        lost = e.__cause__ is not None and is_lost_connection(e.__cause__)
        crash = _crash_signal(server) if lost and server is not None else None
        explained = _explain_crash(e, compiled, board, crash, lost)
        if explained is None:
            raise
        raise explained from e


def _crash_signal(server: RpcServer) -> int | None:
    """The signal that killed the server's session, if it logs one (a moment after the crash)."""
    deadline = time.monotonic() + 3.0
    while (found := server.crash_signal()) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


def _check_arch(compiled: CompiledModel, device: Device, board: Board | None) -> None:
    """Refuse a module the device cannot load, before sending it (its loader would say "No such file")."""
    if device.session is None:
        if compiled.arch != host_arch():
            hint = (
                f" or emulate it (--emulate {compiled.board})" if compiled.board else " or emulate one (--emulate rpi4)"
            )
            raise _arch_mismatch(compiled, host_arch(), "this host", f"; run it on its board (--rpc/--tracker){hint}")
    elif board is not None and compiled.arch != "aarch64":
        raise _arch_mismatch(compiled, "aarch64", f"the emulated {board.description}")


def _arch_mismatch(compiled: CompiledModel, device_arch: str, device: str, hint: str = "") -> InputError:
    return InputError(
        f"{compiled.module_path} is an {compiled.arch} module (target {compiled.target_summary()}"
        f"{', board ' + compiled.board if compiled.board else ''}) and cannot run on {device} "
        f"({device_arch}){hint or ': compile it for that device'}"
    )


def _explain_crash(
    error: DeviceError, compiled: CompiledModel, board: Board | None, crash_signal: int | None, lost: bool
) -> DeviceError | None:
    """A clearer error when the device's process died (SIGILL: a missing CPU feature); None if none."""
    lacking = emulator.missing_features(board, compiled.target.get("mattr") or []) if board else []
    core = board.qemu_cpu if board else "the board's CPU"
    if crash_signal == signal.SIGILL:
        verb = "is" if len(lacking) == 1 else "are"
        detail = f"; {', '.join(lacking)} {verb} not available on {core}" if lacking else ""
        rebuild = f"board {board.name}" if board else "this board"
        return DeviceError(
            f"the board's CPU ({core}) lacks an instruction the module uses: the run died with SIGILL "
            f"(illegal instruction); module built for {compiled.target_summary()}{detail}. "
            f"Compile the model for {rebuild}"
        )
    if crash_signal is not None:
        return DeviceError(f"{error}; the server's session died from {signal.Signals(crash_signal).name}")
    if lacking and lost:
        return DeviceError(f"{error}; likely cause: the module uses {', '.join(lacking)}, which {core} lacks (SIGILL)")
    return None


def _report(
    compiled: CompiledModel, device: Device, board: Board | None, measurement: Measurement, repeat: int, number: int
) -> dict[str, Any]:
    samples_ms = [s * 1e3 for s in measurement.seconds]
    return {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "mptc_version": __version__,
        "module": str(compiled.module_path),
        "target": compiled.target,
        "board": compiled.board,
        "emulated": board is not None,
        "device": _describe(device, board, compiled),
        "latency_ms": {
            "median": statistics.median(samples_ms),
            "min": min(samples_ms),
            "max": max(samples_ms),
            "mean": statistics.fmean(samples_ms),
        },
        "samples_ms": samples_ms,
        "repeat": repeat,
        "number": number,
        **compare_outputs(measurement.output, compiled.y),
        **({"note": EMULATED_NOTE} if board is not None else {}),
    }


def compare_outputs(output: np.ndarray, expected: np.ndarray) -> dict[str, Any]:
    """Relative max error against the reference and argmax agreement along the last axis."""
    if output.shape != expected.shape:
        return {"outputs_match": False, "output_shape": list(output.shape), "expected_shape": list(expected.shape)}
    out, ref = output.astype(np.float64), expected.astype(np.float64)
    max_abs = float(np.max(np.abs(out - ref))) if out.size else 0.0
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    max_rel = max_abs / scale if scale > 0 else max_abs
    argmax_match = bool(np.array_equal(np.argmax(out, axis=-1), np.argmax(ref, axis=-1))) if out.ndim else True
    return {
        "outputs_match": bool(max_rel <= REL_TOLERANCE and argmax_match),
        "max_abs_error": max_abs,
        "max_rel_error": max_rel,
        "rel_tolerance": REL_TOLERANCE,
        "argmax_match": argmax_match,
    }


def _describe(device: Device, board: Board | None, compiled: CompiledModel) -> dict[str, Any]:
    if board is not None:
        text = f"{board.description}, emulated by qemu-aarch64 -cpu {board.qemu_cpu} on an {host_arch()} host"
    elif device.session is None:
        text = f"this host: {cpuinfo().model or host_arch()} ({host_arch()})"
    else:
        text = device.where() + (f" (module built for {compiled.board})" if compiled.board else "")
    return {
        "description": text,
        "connection": device.connection,
        "address": device.address,
        "key": device.key,
        "arch": compiled.arch,
        "emulated_board": board.name if board else None,
        "qemu_cpu": board.qemu_cpu if board else None,
    }


def _write_atomically(report: dict[str, Any], path: Path) -> None:
    """Write to a temporary file beside ``path`` and rename it: readers see all of it or nothing."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w") as handle:
            json.dump(report, handle, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from e
