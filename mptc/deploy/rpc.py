"""Reach a device and run a compiled module on it: connect, upload, load, run, time.

Three ways to reach a device: a TVM RPC server (``--rpc HOST:PORT``), a board handed out by a
TVM tracker (``--tracker HOST:PORT --key KEY``), or this machine. A peer may be down, busy, hung
or not TVM at all, so no step trusts it:

* an RPC address is first checked with a short-timeout TVM handshake (:mod:`mptc.deploy.probe`):
  TVM's own client fails an unreachable host only after the system's connect timeout;
* a tracker is spoken to by :mod:`mptc.deploy.tracker` (a deadline on each reply, every reply
  checked), and a key no board has registered fails at once instead of queueing forever;
* every call into a session (the handshake, the upload, the load, each run, the timing) runs in
  a worker thread under a deadline (:func:`bounded`). TVM's client blocks in C++ on a peer that
  stops answering, so at the deadline this process's connections to that peer are shut down,
  which ends the blocked call with an error, and the step fails with a DeviceError naming the
  device and the step. The deadline is ``timeout`` (``--timeout``) for each step, plus what a
  step's own work should take: the upload at 1 MB/s, a timing call three times its runs at the
  length of one run timed by the device first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import socket
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import tvm
from tvm import rpc as tvm_rpc

from mptc.artifact import MODULE_FILE
from mptc.deploy import probe, trial
from mptc.deploy.artifact import CompiledModel, load_library
from mptc.deploy.emulator import Board, board_from_workpath
from mptc.deploy.settings import (
    DEFAULT_QUEUE_TIMEOUT_S,
    DEFAULT_TIMEOUT_S,
    check_device_options,
    check_key,
    check_seconds,
    parse_address,
)
from mptc.deploy.tracker import TrackerClient
from mptc.errors import DeviceError, InputError, UnsupportedError

logger = logging.getLogger(__name__)

T = TypeVar("T")
UPLOAD_BYTES_PER_S = 1e6  # the slowest link an upload is given time for, on top of the timeout
RUN_SLACK = 3.0  # a timing call may take this many times its runs at the length of one run
# What TVM's client reports when the other end of a session went away mid-call (a closed
# connection ends the session with kShutdown; socket failures come from tvm::support::Socket).
_LOST_CONNECTION = ("kShutdown", "Socket", "Broken pipe", "Connection reset")


@dataclass(frozen=True)
class Device:
    """Where a module runs: this machine (``session`` is None) or the far end of an RPC session.

    ``peer`` is the (host, port) the session is connected to, whose connections a stalled call
    shuts down; ``timeout`` the seconds each step is given."""

    connection: str  # "local", "rpc", "tracker", or "emulator" (an rpc server profile started itself)
    address: str | None
    key: str | None
    session: tvm_rpc.RPCSession | None
    emulated_board: Board | None
    peer: tuple[str, int] | None = None
    timeout: float = DEFAULT_TIMEOUT_S

    def where(self) -> str:
        """The device in a few words, for messages."""
        if self.connection == "tracker":
            server = f" (its server at {self.peer[0]}:{self.peer[1]})" if self.peer else ""
            return f"board '{self.key}' from the tracker at {self.address}{server}"
        if self.connection == "emulator":
            return f"the emulated board at {self.address}"
        if self.connection == "rpc":
            return f"the RPC server at {self.address}"
        return "this host"


def connect(
    rpc: str | None = None,
    tracker: str | None = None,
    key: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    queue_timeout: float = DEFAULT_QUEUE_TIMEOUT_S,
) -> Device:
    """Open a session with the device the options name; none of them means this machine.

    Args:
        rpc: ``HOST:PORT`` of a TVM RPC server.
        tracker: ``HOST:PORT`` of a TVM tracker, with ``key`` the kind of board to ask it for.
        timeout: seconds each network step may take.
        queue_timeout: seconds to wait in the tracker's queue for a free board.

    Raises:
        UsageError: a malformed address or key, both ``rpc`` and ``tracker``, a tracker without a key.
        DeviceError: the device cannot be reached, does not answer in time, or not as TVM does.
    """
    check_seconds(timeout, "timeout")
    check_seconds(queue_timeout, "queue_timeout")
    check_device_options(rpc, tracker, key)
    if rpc is not None:
        host, port = parse_address(rpc, "--rpc")
        what = f"the RPC server at {rpc}"
        _check(probe.rpc_handshake, host, port, timeout, what, "is `mptc serve-device` running there, and not busy?")
        session = _open_session(host, port, "", timeout, what)
        device = Device("rpc", rpc, None, session, None, (host, port), timeout)
        return _with_board(device)
    if tracker is not None:
        host, port = parse_address(tracker, "--tracker")
        with TrackerClient(host, port, timeout) as client:
            registered = client.keys()
            if check_key(key or "") not in registered:
                shown = [k if k.isprintable() else repr(k) for k in registered[:10]]
                known = (
                    ", ".join(shown) + (f" and {len(registered) - 10} more" if len(registered) > 10 else "") or "none"
                )
                raise DeviceError(f"the tracker at {tracker} has no board with key '{key}' (keys registered: {known})")
            grant = client.request(key or "", queue_timeout)
            what = f"board '{key}' from the tracker at {tracker} (its server at {grant.host}:{grant.port})"
            session = _open_session(grant.host, grant.port, grant.match_key, timeout, what)
        device = Device("tracker", tracker, key, session, None, (grant.host, grant.port), timeout)
        return _with_board(device)
    return Device("local", None, None, None, None, None, timeout)


class LoadedModule:
    """A compiled module loaded on a device: run inputs on it, time it there.

    On this host the module is first loaded and run in a child process (:mod:`mptc.deploy.trial`):
    loading a library runs its code, and one that crashes must not take this process with it."""

    def __init__(self, device: Device, compiled: CompiledModel) -> None:
        self.device = device
        self._run_s: float | None = None  # one run's seconds on the device, once timed
        wrong_arch_hint = f"{MODULE_FILE} is an {compiled.arch} library: is the device {compiled.arch}?"
        if device.session is None:
            trial.load_and_run(compiled, device.timeout)
        with _stage(device, f"loading {MODULE_FILE}", hint=wrong_arch_hint):
            if device.session is None:
                lib = load_library(compiled.module_path)
                self._dev = tvm.device(compiled.device_kind, 0)
                self._vm = tvm.runtime.vm.VirtualMachine(lib, self._dev)
            else:
                session = device.session
                size = compiled.module_path.stat().st_size
                self._bounded(
                    lambda: session.upload(str(compiled.module_path), MODULE_FILE),
                    f"uploading {MODULE_FILE} ({size:,} bytes)",
                    size / UPLOAD_BYTES_PER_S,
                )
                self._dev = session.device(compiled.device_kind, 0)
                self._vm = self._bounded(
                    lambda: tvm.runtime.vm.VirtualMachine(session.load_module(MODULE_FILE), self._dev),
                    f"loading {MODULE_FILE}",
                )

    def run(self, x: np.ndarray, what: str) -> np.ndarray:
        """The module's output on ``x``; ``what`` names the input in an error."""

        def run() -> object:
            result = self._vm["main"](tvm.runtime.tensor(x, self._dev))
            return result.numpy() if hasattr(result, "numpy") else result

        with _stage(self.device, f"running {what}"):
            output = self._bounded(run, f"running {what}")
        if not isinstance(output, np.ndarray):
            raise UnsupportedError("the module returns several outputs; profile compares exactly one")
        return output

    def time(self, x: np.ndarray, *, repeat: int, number: int) -> list[float]:
        """Seconds of ``repeat`` runs on ``x`` (each a mean over ``number``), by the device's own timer.

        Raises:
            DeviceError: the device's timer gave something that is not a duration (inf, NaN, negative).
        """

        def measure(repeat: int, number: int) -> list[float]:
            self._vm.set_input("main", tvm.runtime.tensor(x, self._dev))
            timer = self._vm.time_evaluator("invoke_stateful", self._dev, number=number, repeat=repeat)
            seconds = [float(s) for s in timer("main").results]
            bad = [s for s in seconds if not (np.isfinite(s) and s >= 0)]
            if bad or len(seconds) != repeat:
                raise DeviceError(
                    f"{self.device.where()}: the device's timer gave {bad[0] if bad else len(seconds)} "
                    f"{'seconds for a repeat' if bad else 'repeats'} of {number} run(s): not a measurement"
                )
            return seconds

        with _stage(self.device, "timing"):
            if self.device.session is not None and self._run_s is None:
                # One run timed by the device, to give the timing call its due (a run seen from here
                # is mostly the network's round trip).
                self._run_s = self._bounded(lambda: measure(1, 1), "timing one run")[0]
            runs = repeat * number + 1  # the evaluator warms up with one run first
            return self._bounded(lambda: measure(repeat, number), "timing", RUN_SLACK * runs * (self._run_s or 0.0))

    def call(self, x: np.ndarray) -> Callable[[], object]:
        """One call of the module on ``x`` (already on the device) from Python: what a caller in this
        process pays, as for any peer run in it. Over RPC it would time the network too."""
        data = tvm.runtime.tensor(x, self._dev)
        main = self._vm["main"]
        return lambda: main(data)

    def _bounded(self, call: Callable[[], T], what: str, extra_s: float = 0.0) -> T:
        if self.device.session is None:  # this host: no peer to stall
            return call()
        return bounded(call, self.device.timeout + extra_s, self.device.peer, f"{self.device.where()}: {what}")


def bounded(call: Callable[[], T], seconds: float, peer: tuple[str, int] | None, what: str) -> T:
    """``call()``'s result, or a DeviceError if it takes more than ``seconds``.

    ``call`` runs in a worker thread (TVM releases the GIL in its calls). Past the deadline this
    process's TCP connections to ``peer`` are shut down: a call blocked on them returns with an
    error and its thread ends. ``what`` names the device and the step in the error."""
    outcome: list[tuple[bool, object]] = []

    def work() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as error:  # noqa: BLE001 - handed to the calling thread
            outcome.append((False, error))

    worker = threading.Thread(target=work, name="mptc-rpc-call", daemon=True)
    worker.start()
    worker.join(seconds)
    if not outcome:
        closed = _shut_down_connections(peer) if peer else 0
        worker.join(1.0)
        logger.info("%s: stalled; %d connection(s) shut down", what, closed)
        raise DeviceError(f"{what}: no answer within {seconds:.3g} s (the peer stalled; raise --timeout if it is slow)")
    done, value = outcome[0]
    if done:
        return value  # type: ignore[return-value]
    raise value  # type: ignore[misc]


def _shut_down_connections(peer: tuple[str, int]) -> int:
    """Shut down this process's TCP connections to ``peer`` (host, port); how many there were."""
    host, port = peer
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)}
        descriptors = [int(name) for name in os.listdir("/proc/self/fd")]
    except (OSError, ValueError):
        return 0
    closed = 0
    for fd in descriptors:
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
            sock = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        with sock:
            try:
                remote = sock.getpeername()
                if sock.type == socket.SOCK_STREAM and remote[0] in addresses and remote[1] == port:
                    sock.shutdown(socket.SHUT_RDWR)  # shared by the original descriptor: its recv returns
                    closed += 1
            except (OSError, TypeError, IndexError):
                continue
    return closed


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
    except AttributeError as e:  # tvm_ffi's "Module has no function 'vm_load_executable'": a foreign library
        raise InputError(
            f"{device.where()}: {what} failed: {MODULE_FILE} is not a module `mptc compile` wrote ({summarize(e)}); "
            "recompile"
        ) from e
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


def _open_session(host: str, port: int, key: str, timeout: float, what: str) -> tvm_rpc.RPCSession:
    """TVM's session with the server at host:port, its handshake bounded by ``timeout``."""
    try:
        return bounded(lambda: tvm_rpc.connect(host, port, key), timeout, (host, port), f"{what}: the TVM handshake")
    except RuntimeError as e:
        raise DeviceError(f"{what} refused the session: {summarize(e)}") from e


def _with_board(device: Device) -> Device:
    """``device`` with the board an mptc emulator plays, read from its work path (None for a real board)."""
    session = device.session
    assert session is not None

    def workpath() -> str:
        return str(session.get_function("tvm.rpc.server.workpath")(""))

    try:
        path = bounded(workpath, device.timeout, device.peer, f"{device.where()}: asking its work path")
    except RuntimeError as e:
        logger.debug("server has no tvm.rpc.server.workpath (%s): not an mptc emulator", summarize(e))
        return device
    return dataclasses.replace(device, emulated_board=board_from_workpath(path))
