"""Load a module and run its reference input in a child process before this process loads it.

Loading a shared library runs its code: its constructors run at ``dlopen``. A ``module.so`` that
is not what ``mptc compile`` wrote (another library, a damaged one that still passes the checks
of :mod:`mptc.deploy.artifact`) may crash there, or in its first run, and take ``mptc profile``
down with a signal and no message. So on this host the module is first loaded and run once by a
child Python; only if the child reports both steps done does ``profile`` load it in-process (to
time it without a process boundary in the way).

The child reports each step on its stdout. It ends in one of four ways:

* both steps reported: the module loads and runs, go on;
* TVM found no Relax VM in the library (``AttributeError``: no ``vm_load_executable``): the
  module is refused (``InputError``) before this process loads a library that is not ours;
* another Python exception reported (TVM refused the input, no such device here): go on, and the
  same error comes back, classified, from the in-process load (:mod:`mptc.deploy.rpc`);
* killed by a signal or exited without a report: the module is refused (``InputError``; a
  ``SIGILL`` is this host's CPU lacking an instruction: ``DeviceError``);
* still running at the deadline (``timeout`` once it has imported TVM): killed, ``DeviceError``.

This is no sandbox: the child has this process's rights. It keeps a crash from becoming
``profile``'s crash; it does not make a hostile module safe (see docs/deploy.md, Security).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time

from mptc.artifact import MODULE_FILE, REFERENCE_FILE
from mptc.deploy.artifact import CompiledModel
from mptc.errors import DeviceError, InputError

logger = logging.getLogger(__name__)

STARTUP_S = 60.0  # for the child to import TVM (1 s here, more on a loaded machine); then the timeout runs
READY, LOADED, RAN, RAISED = "mptc-trial: ready", "mptc-trial: loaded", "mptc-trial: ran", "mptc-trial: raised"
_CHILD = f"""
import sys
sys.modules["torch"] = None  # tvm_ffi imports torch if it can: most of a second this child has no use for
import numpy as np
import tvm
path, reference, kind = sys.argv[1:4]
print({READY!r}, flush=True)
try:
    lib = tvm.runtime.load_module(path)
    print({LOADED!r}, flush=True)
    device = tvm.device(kind, 0)
    vm = tvm.runtime.vm.VirtualMachine(lib, device)
    with np.load(reference, allow_pickle=False) as arrays:
        vm["main"](tvm.runtime.tensor(arrays["x"], device))
    print({RAN!r}, flush=True)
except Exception as error:
    print({RAISED!r}, type(error).__name__, (str(error).strip().splitlines() or [""])[0], flush=True)
"""


def load_and_run(compiled: CompiledModel, timeout: float) -> None:
    """Load ``compiled``'s module and run its reference input in a child process, within
    ``timeout`` seconds once the child has imported TVM; raise if that crashed or hung.

    Raises:
        InputError: the child died from a signal or exited without reporting (a foreign or
            damaged library).
        DeviceError: the child died from SIGILL (this CPU lacks an instruction), or hung.
    """
    module = compiled.module_path
    command = [sys.executable, "-c", _CHILD, str(module), str(compiled.out_dir / REFERENCE_FILE), compiled.device_kind]
    with tempfile.TemporaryFile() as stderr:
        child = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,  # its own group: whatever it starts is killed with it
            text=True,
            errors="replace",
        )
        try:
            reported, hung = _reports(child, timeout)
        finally:
            _kill(child)  # and anything it left running
            child.wait()
        stderr.seek(0)
        logger.debug("trial of %s: exit %s, %s; stderr: %s", module, child.returncode, reported, stderr.read()[-2000:])
    step = f"running the {REFERENCE_FILE} input" if LOADED in reported else "loading"
    if hung:
        if READY not in reported:
            raise DeviceError(
                f"a trial process could not import TVM within {STARTUP_S:g} s: is this machine overloaded?"
            )
        raise DeviceError(
            f"{module} was still {step} after {timeout:g} s on this host (in a trial process): it hangs, or the "
            "model is that slow here (then raise --timeout)"
        )
    raised = next((line[len(RAISED) :].strip() for line in reported if line.startswith(RAISED)), None)
    if raised is not None and raised.startswith("AttributeError"):
        raise InputError(
            f"{MODULE_FILE} is not a module `mptc compile` wrote ({raised.removeprefix('AttributeError').strip()}), "
            "found by a trial process; recompile"
        )
    if RAN in reported or raised is not None:
        return
    code = child.returncode
    if code is not None and code < 0:
        if -code == signal.SIGILL:
            raise DeviceError(
                f"{module} died from SIGILL (illegal instruction) while {step} on this host: it uses an "
                "instruction this CPU lacks; compile it for this host (--target x86)"
            )
        raise InputError(
            f"{MODULE_FILE} crashed while {step} ({_signal_name(-code)}), in a trial process: it is not a module "
            "`mptc compile` wrote, or it is damaged; recompile"
        )
    raise InputError(
        f"{MODULE_FILE} ended the process (exit code {code}) while {step}, in a trial process: it is not a module "
        "`mptc compile` wrote; recompile"
    )


def _reports(child: subprocess.Popen[str], timeout: float) -> tuple[list[str], bool]:
    """The child's report lines until it is done or its stdout closes, and whether it hung: it got
    :data:`STARTUP_S` to report ready, then ``timeout`` to load and run."""
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert child.stdout is not None
        for line in child.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=read, name="mptc-trial-reader", daemon=True).start()
    reported: list[str] = []
    deadline = time.monotonic() + STARTUP_S
    while True:
        try:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.0))
        except queue.Empty:
            return reported, True
        if line is None:
            return reported, False
        reported.append(line)
        if line == READY:
            deadline = time.monotonic() + timeout
        elif line == RAN or line.startswith(RAISED):
            return reported, False


def _kill(child: subprocess.Popen[str]) -> None:
    """Kill the child's whole process group (idempotent)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signal.SIGKILL)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
