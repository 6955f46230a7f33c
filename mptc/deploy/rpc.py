"""Reach a device and run a compiled module on it: connect, upload, load, run once, time.

Three ways to reach a device: a TVM RPC server (``--rpc HOST:PORT``), a board handed out by a
TVM tracker (``--tracker HOST:PORT --key KEY``), or this machine. Every address is first checked
with a short-timeout TVM handshake (:mod:`mptc.deploy.probe`) and a tracker key against the
tracker's list, because TVM's own client retries an unreachable host for a minute and waits
forever for a handshake that never comes or a key no board has registered.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import tvm
from tvm import rpc as tvm_rpc

from mptc.artifact import MODULE_FILE
from mptc.deploy import probe
from mptc.deploy.artifact import CompiledModel
from mptc.deploy.emulator import Board, board_from_workpath
from mptc.errors import DeviceError, InputError, UnsupportedError

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
# What TVM's client reports when the other end of a session went away mid-call (a closed
# connection ends the session with kShutdown; socket failures come from tvm::support::Socket).
_LOST_CONNECTION = ("kShutdown", "Socket", "Broken pipe", "Connection reset")


@dataclass(frozen=True)
class Device:
    """Where a module runs: this machine (``session`` is None) or the far end of an RPC session."""

    connection: str  # "local", "rpc", "tracker", or "emulator" (an rpc server profile started itself)
    address: str | None
    key: str | None
    session: tvm_rpc.RPCSession | None
    emulated_board: Board | None

    def where(self) -> str:
        """The device in a few words, for messages."""
        if self.connection == "tracker":
            return f"board '{self.key}' from the tracker at {self.address}"
        if self.connection == "emulator":
            return f"the emulated board at {self.address}"
        if self.connection == "rpc":
            return f"the RPC server at {self.address}"
        return "this host"


@dataclass(frozen=True)
class Measurement:
    """One reference run's output and the timed repeats (seconds, each a mean over ``number`` runs)."""

    output: np.ndarray
    seconds: list[float]


def parse_address(text: str, option: str) -> tuple[str, int]:
    """``HOST:PORT`` -> (host, port); ``option`` names the flag in the error."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"{option} expects HOST:PORT (e.g. 192.168.1.20:9090), got '{text}'")
    return host, int(port)


def connect(
    rpc: str | None = None, tracker: str | None = None, key: str | None = None, timeout: float = CONNECT_TIMEOUT_S
) -> Device:
    """Open a session with the device the options name; none of them means this machine."""
    if rpc and tracker:
        raise InputError("give either --rpc HOST:PORT or --tracker HOST:PORT --key KEY, not both")
    if tracker and not key:
        raise InputError("--tracker needs --key: the kind of board to ask the tracker for (e.g. rpi4)")
    if rpc:
        host, port = parse_address(rpc, "--rpc")
        _check(
            probe.rpc_handshake,
            host,
            port,
            timeout,
            f"the RPC server at {rpc}",
            "is `mptc serve-device` running there, and not busy with another session?",
        )
        try:
            session = tvm_rpc.connect(host, port)
        except RuntimeError as e:
            raise DeviceError(f"the RPC server at {rpc} refused the session: {summarize(e)}") from e
        return Device("rpc", rpc, None, session, _emulated_board(session))
    if tracker:
        host, port = parse_address(tracker, "--tracker")
        _check(
            probe.tracker_handshake,
            host,
            port,
            timeout,
            f"the tracker at {tracker}",
            "is a TVM tracker (python -m tvm.exec.rpc_tracker) running there?",
        )
        session = _request_from_tracker(host, port, key or "")
        return Device("tracker", tracker, key, session, _emulated_board(session))
    return Device("local", None, None, None, None)


def run_module(device: Device, compiled: CompiledModel, *, repeat: int, number: int) -> Measurement:
    """Load the module on the device, run the reference input once, then time ``repeat`` x ``number`` runs."""
    wrong_arch_hint = f"{MODULE_FILE} is an {compiled.arch} library: is the device {compiled.arch}?"
    with _stage(device, f"loading {MODULE_FILE}", hint=wrong_arch_hint):
        if device.session is None:
            lib = tvm.runtime.load_module(str(compiled.module_path))
            dev = tvm.device(compiled.device_kind, 0)
        else:
            device.session.upload(str(compiled.module_path), MODULE_FILE)
            lib = device.session.load_module(MODULE_FILE)
            dev = device.session.device(compiled.device_kind, 0)
        vm = tvm.runtime.vm.VirtualMachine(lib, dev)
    with _stage(device, "running the reference input"):
        x = tvm.runtime.tensor(compiled.x, dev)
        result = vm["main"](x)
        if not hasattr(result, "numpy"):
            raise UnsupportedError("the module returns several outputs; profile compares exactly one")
        output = result.numpy()
    with _stage(device, "timing"):
        vm.set_input("main", x)
        timer = vm.time_evaluator("invoke_stateful", dev, number=number, repeat=repeat)
        seconds = [float(s) for s in timer("main").results]
    return Measurement(output, seconds)


def summarize(error: BaseException) -> str:
    """The informative line of a (possibly remote, multi-line) TVM error."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith(("File ", "Traceback", "RPCError: Error caught"))]
    return (lines[-1] if lines else type(error).__name__)[:300]


def is_lost_connection(error: BaseException) -> bool:
    """True when an RPC call failed because the far end went away (killed or crashed)."""
    return isinstance(error, OSError) or any(mark in str(error) for mark in _LOST_CONNECTION)


@contextlib.contextmanager
def _stage(device: Device, what: str, hint: str = "") -> Iterator[None]:
    """Turn TVM's errors during one step into a DeviceError that names the device and the step."""
    try:
        yield
    except (RuntimeError, OSError) as e:
        if device.session is not None and is_lost_connection(e):
            raise DeviceError(
                f"{device.where()}: the connection was lost while {what} ({summarize(e)}): "
                "the server process died or was killed"
            ) from e
        raise DeviceError(f"{device.where()}: {what} failed: {summarize(e)}{' (' + hint + ')' if hint else ''}") from e
    except (ValueError, TypeError) as e:  # TVM's argument checks: an input the module was not built for
        raise InputError(f"{device.where()}: {what} failed, the module does not take this input: {summarize(e)}") from e


def _check(
    handshake: Callable[[str, int, float], None], host: str, port: int, timeout: float, what: str, hint: str
) -> None:
    try:
        handshake(host, port, timeout)
    except TimeoutError as e:
        raise DeviceError(f"cannot reach {what}: no answer within {timeout:g} s ({hint})") from e
    except OSError as e:
        raise DeviceError(f"cannot reach {what}: {e.strerror or e} ({hint})") from e


def _request_from_tracker(host: str, port: int, key: str) -> tvm_rpc.RPCSession:
    """A session with a board of kind ``key`` (waits while all are busy); fails fast when none has that key."""
    address = f"{host}:{port}"
    try:
        tracker = tvm_rpc.connect_tracker(host, port)
        summary = tracker.summary()
    except RuntimeError as e:
        raise DeviceError(f"{address} did not answer as a TVM tracker: {summarize(e)}") from e
    registered = sorted({item["key"].split(":", 1)[-1] for item in summary.get("server_info", [])})
    if key not in registered:
        known = ", ".join(registered) or "none"
        raise DeviceError(f"the tracker at {address} has no board with key '{key}' (keys registered: {known})")
    try:
        return tracker.request(key, max_retry=1)
    except RuntimeError as e:
        raise DeviceError(f"the tracker at {address} could not open a session with '{key}': {summarize(e)}") from e
    finally:
        tracker.close()


def _emulated_board(session: tvm_rpc.RPCSession) -> Board | None:
    """The board an mptc emulator plays, read from its work path; None for a real board."""
    try:
        workpath = session.get_function("tvm.rpc.server.workpath")("")
    except RuntimeError as e:
        logger.debug("server has no tvm.rpc.server.workpath (%s): not an mptc emulator", summarize(e))
        return None
    return board_from_workpath(str(workpath))
