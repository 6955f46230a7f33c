"""A TVM RPC server in a child process: started, awaited until it answers, always stopped.

One class serves two cases: an emulated board (the interpreter is the qemu launcher, see
:mod:`mptc.deploy.emulator`) and a real board running ``mptc serve-device`` (the board's own
Python). TVM's server forks a worker process and one more process per session, so the server gets
its own process group and is stopped as a group: nothing is left running, even after a crash.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from mptc.deploy.probe import answers
from mptc.errors import DeviceError

logger = logging.getLogger(__name__)

# TVM's server logs a session process that died from signal N as "error code -N"; qemu-user
# reports a guest killed by a signal as "uncaught target signal N".
_SIGNAL_PATTERNS = (
    re.compile(r"uncaught target signal (\d+)"),
    re.compile(r"exited unsuccessfully with error code -(\d+)"),
)
_PR_SET_PDEATHSIG = 1
# The server, run in the interpreter itself. `python -m tvm.exec.rpc_server` does the same through
# a PopenWorker, a second process that imports TVM again: 14 s instead of 7 s under qemu. The
# listening loop never returns; it ends only when a session process dies (e.g. from SIGILL).
# tvm_ffi imports torch and ml_dtypes if it can; a server copies tensors as bytes and needs neither
# (ml_dtypes' start-up alone is half of TVM's import under qemu).
_SERVE = """
import sys
sys.modules["torch"] = sys.modules["ml_dtypes"] = None
from tvm.rpc.server import PopenRPCServerState
host, port, tracker, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
tracker_addr = (tracker.rsplit(":", 1)[0], int(tracker.rsplit(":", 1)[1])) if tracker else None
PopenRPCServerState(host, port, port + 1, tracker_addr=tracker_addr, key=key).thread.join()
sys.exit("the RPC server stopped serving: a session process died (its error is above)")
"""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free now (the OS picks it), so parallel servers never collide."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class RpcServer:
    """A TVM RPC server (as ``python -m tvm.exec.rpc_server``) in its own process group; a context manager.

    Args:
        python: the interpreter command (a qemu launcher for an emulated board).
        host: address to bind; ``0.0.0.0`` serves the network, ``127.0.0.1`` only this machine.
        port: port to bind; ``None`` picks a free one.
        tracker: ``HOST:PORT`` of a TVM tracker to register with (then ``key`` is required).
        key: the device key the tracker hands out (e.g. ``rpi4``).
        env: extra environment variables for the server (e.g. ``QEMU_CPU``).
        work_prefix: prefix of the private folder holding the log and the sessions' files (its
            name is visible to clients through ``tvm.rpc.server.workpath``).
        capture_log: write the server's output to a log file (read for crash causes) instead of
            this process's stdout/stderr.
        startup_timeout: seconds to wait for the first answer; an emulated import takes ~7 s.
    """

    def __init__(
        self,
        python: Sequence[str | os.PathLike[str]],
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        tracker: str | None = None,
        key: str = "",
        env: Mapping[str, str] | None = None,
        work_prefix: str = "mptc-rpc-",
        capture_log: bool = True,
        startup_timeout: float = 120.0,
    ) -> None:
        if tracker and not key:
            raise DeviceError("a server registered with a tracker needs a key (e.g. --key rpi4)")
        self.python = [str(part) for part in python]
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.tracker = tracker
        self.key = key
        self.env = dict(env or {})
        self.work_prefix = work_prefix
        self.capture_log = capture_log
        self.startup_timeout = startup_timeout
        self.workdir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._group: int | None = None
        self._log_text = ""

    @property
    def address(self) -> str:
        """``HOST:PORT`` a client connects to (loopback when the server binds every interface)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"{host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """Process id of the server, which is also its process group id."""
        return self._proc.pid if self._proc is not None else None

    def __enter__(self) -> RpcServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start the server and return once it answers the RPC handshake."""
        self.workdir = Path(tempfile.mkdtemp(prefix=self.work_prefix))
        command = [*self.python, "-c", _SERVE, self.host, str(self.port), self.tracker or "", self.key]
        env = {**os.environ, **self.env, "TMPDIR": str(self.workdir)}
        output = open(self.workdir / "server.log", "wb") if self.capture_log else None
        logger.info("starting a TVM RPC server with %s at %s", command[0], self.address)
        try:
            self._proc = subprocess.Popen(
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT if output else None,
                start_new_session=True,
                preexec_fn=_child_setup,
            )
        except OSError as e:
            self._cleanup()
            raise DeviceError(f"cannot start the RPC server ({command[0]}): {e.strerror}") from e
        finally:
            if output:
                output.close()
        self._group = self._proc.pid
        try:
            self._wait_until_answering()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the server's whole process group (idempotent) and remove its private folder."""
        if self._proc is not None and self._proc.poll() is None:
            _signal_group(self._proc.pid, signal.SIGTERM)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                _signal_group(self._proc.pid, signal.SIGKILL)
                self._proc.wait()
        if self._group is not None:
            # Session processes may outlive the group leader; SIGKILL ends them at once. Only
            # once: after that the group id may be reused by an unrelated process.
            _signal_group(self._group, signal.SIGKILL)
            self._group = None
        self._cleanup()

    def wait(self) -> int:
        """Block until the server exits; its exit code."""
        if self._proc is None:
            raise DeviceError("the RPC server was never started")
        return self._proc.wait()

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log(self) -> str:
        """The server's output so far (kept after :meth:`stop`)."""
        if self.workdir is not None and (self.workdir / "server.log").is_file():
            self._log_text = (self.workdir / "server.log").read_text(errors="replace")
        return self._log_text

    def crash_signal(self) -> int | None:
        """The signal that killed a session process (4 = SIGILL), if the log reports one."""
        text = self.log()
        for pattern in _SIGNAL_PATTERNS:
            match = pattern.search(text)
            if match:
                return int(match.group(1))
        return None

    def _wait_until_answering(self) -> None:
        assert self._proc is not None
        host, port = self.address.rsplit(":", 1)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise DeviceError(
                    f"the RPC server exited with code {self._proc.returncode} while starting: "
                    f"{_last_line(self.log()) or 'no output'}"
                )
            if answers(host, int(port)):
                logger.info("RPC server answers at %s", self.address)
                return
            time.sleep(0.25)
        raise DeviceError(f"the RPC server did not answer at {self.address} within {self.startup_timeout:.0f} s")

    def _cleanup(self) -> None:
        if self.workdir is not None:
            self.log()
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None


def _child_setup() -> None:
    """In the child before exec: no core files (qemu dumps one per SIGILL) and die with the parent."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""
