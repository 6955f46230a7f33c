"""A real TVM RPC server that stops answering in the middle of a profile, and timers that lie.

The server is a real one (``RpcServer``, on 127.0.0.1), frozen with SIGSTOP after a delay drawn
by hypothesis, so the stall falls on whichever step is in flight: the handshake, the upload, the
load, a run or the timing. TVM's client blocks on it without a bound; ``profile --timeout 1``
must give up with exit 6 and one line naming the server, in bounded time, and leave no report.
The server is thawed (SIGCONT) after each case, and answers the next one.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time

import pytest
import tvm
from hypothesis import given, settings
from hypothesis import strategies as st

from mptc.deploy.probe import answers
from mptc.deploy.server import RpcServer
from tests.deploy.conftest import HOST, _mlp, write_out
from tests.robustness.harness import FUZZ, assert_refused, invoke, record

# One second per step; a stall on the timing call gets its runs' due on top (a few ms here), and
# the stalled call's thread a second to end. Far below "forever", far above a slow machine's noise.
WALL_S = 20.0


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return write_out(tmp_path_factory.mktemp("stalls") / "out", _mlp(), HOST, None)


@pytest.fixture(scope="module")
def server():
    with RpcServer([sys.executable]) as server:
        yield server


def test_a_server_that_freezes_mid_profile(out, server):
    host, port = server.address.rsplit(":", 1)
    outcomes: list[int] = []

    @settings(FUZZ, max_examples=8)
    @given(delay=st.floats(0.0, 0.5))  # a profile here takes about 0.6 s, most of it timing
    def check(delay: float) -> None:
        deadline = time.monotonic() + 30
        while not answers(host, int(port), timeout=1.0):  # the session of the case before has ended
            assert time.monotonic() < deadline, "the server did not come back after SIGCONT"
            time.sleep(0.2)
        freeze = threading.Timer(delay, os.killpg, (server.pid, signal.SIGSTOP))
        record("profile against a server frozen after", f"{delay:.3f}")
        started = time.monotonic()
        freeze.start()
        try:
            result = invoke(
                ["profile", out, "--rpc", server.address, "--timeout", "1", "--repeat", "20", "--number", "20000"]
            )
        finally:
            freeze.cancel()
            freeze.join()
            os.killpg(server.pid, signal.SIGCONT)
        elapsed = time.monotonic() - started
        outcomes.append(result.exit_code)
        if result.exit_code == 0:  # it finished before the freeze
            (out / "profile.json").unlink()
            return
        assert_refused(result, out / "profile.json", codes=frozenset({6}))
        assert server.address in result.stderr.splitlines()[-1]
        assert elapsed < WALL_S, f"frozen after {delay:.2f} s, refused after {elapsed:.1f} s: {result.stderr}"

    check()
    assert 6 in outcomes, f"no case froze the server while the profile ran: {outcomes}"


def test_timings_that_are_not_durations(out, monkeypatch):
    """A device timer that reports inf, NaN or a negative time (as 2**32 runs once did): exit 6."""
    real = tvm.runtime.vm.VirtualMachine.time_evaluator

    @settings(FUZZ, max_examples=6)  # each profile here first loads the module in a trial process (1 s)
    @given(
        bad=st.sampled_from([math.inf, -math.inf, math.nan, -1e-3]),
        good=st.floats(1e-7, 1.0),
        repeat=st.integers(1, 5),
        where=st.integers(0, 4),
    )
    def check(bad: float, good: float, repeat: int, where: int) -> None:
        results = [good] * repeat
        results[where % repeat] = bad

        def lying(self, *args, **kwargs):
            real(self, *args, **kwargs)  # checks its arguments as before
            return lambda *_: type("Result", (), {"results": results})()

        record("profile with a device timer giving", repr(results))
        with monkeypatch.context() as patch:
            patch.setattr(tvm.runtime.vm.VirtualMachine, "time_evaluator", lying)
            result = invoke(["profile", out, "--repeat", str(repeat)])
        assert_refused(result, out / "profile.json", codes=frozenset({6}))
        assert "not a measurement" in result.stderr

    check()
