"""The RPC server process: answers once started, and leaves nothing behind when stopped."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest

from mptc.deploy.probe import answers
from mptc.deploy.rpc import connect
from mptc.deploy.server import RpcServer
from mptc.errors import DeviceError


def test_host_server_answers_then_stops_with_its_whole_group() -> None:
    with RpcServer([sys.executable]) as server:
        host, port = server.address.split(":")
        assert answers(host, int(port))
        session = connect(rpc=server.address).session  # the server forks a process for it
        assert session is not None and len(_running_in_group(server.pid)) == 2
        group = server.pid
    assert not server.is_running()
    assert not answers(host, int(port), timeout=0.5)
    time.sleep(0.2)  # SIGKILL is delivered at once; give the scheduler a moment
    assert _running_in_group(group) == []


def _running_in_group(group: int) -> list[int]:
    """Live (not zombie: init reaps those when it gets to them) processes of a process group."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            alive.append(int(stat.parent.name))
    return alive


def test_server_that_dies_while_starting_is_reported() -> None:
    server = RpcServer([sys.executable, "-c", "import sys; print('no tvm here'); sys.exit(3)"])
    with pytest.raises(DeviceError, match="exited with code 3 while starting: no tvm here"):
        server.start()
    assert server.workdir is None


def test_crash_signal_is_read_from_qemu_or_tvm_lines(tmp_path) -> None:
    server = RpcServer([sys.executable])
    server.workdir = tmp_path
    (tmp_path / "server.log").write_text("INFO connected\nqemu: uncaught target signal 4 (Illegal instruction)\n")
    assert server.crash_signal() == signal.SIGILL
    (tmp_path / "server.log").write_text("RuntimeError: Child process 12 exited unsuccessfully with error code -9\n")
    assert server.crash_signal() == signal.SIGKILL
    (tmp_path / "server.log").write_text("INFO finish serving\n")
    assert server.crash_signal() is None
