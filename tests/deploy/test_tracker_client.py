"""mptc's tracker client (mptc/deploy/tracker.py) against TVM's own tracker: the same protocol, with a
deadline on every reply, and a queue that is waited in for a bounded time."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from mptc.deploy.profile import profile
from mptc.deploy.rpc import connect
from mptc.deploy.server import RpcServer
from mptc.deploy.tracker import TrackerClient
from mptc.errors import DeviceError
from tests.deploy.conftest import fresh_copy

KEY = "host-client"  # a key of its own: other tests' boards on the package's tracker stay out of it


@pytest.fixture(scope="module")
def board(tracker: str):
    """This host registered with the package's tracker under :data:`KEY`."""
    with RpcServer([sys.executable], tracker=tracker, key=KEY):
        host, port = tracker.rsplit(":", 1)
        deadline = time.monotonic() + 30
        while True:  # the server registers asynchronously
            with TrackerClient(host, int(port), 5.0) as client:
                if KEY in client.keys():
                    break
            assert time.monotonic() < deadline, "the server did not register with the tracker"
            time.sleep(0.2)
        yield tracker


def test_a_board_from_the_tracker_profiles(board: str, mlp_host_out: Path, tmp_path: Path) -> None:
    out = fresh_copy(mlp_host_out, tmp_path / "out")
    report = profile(out, tracker=board, key=KEY, repeat=3, timeout=10)
    assert report["outputs_match"] and report["device"]["connection"] == "tracker"
    assert report["device"]["key"] == KEY


def test_waiting_for_a_busy_board_is_bounded(board: str, mlp_host_out: Path, tmp_path: Path) -> None:
    held = connect(tracker=board, key=KEY, timeout=10)  # the only board of this kind, now busy
    try:
        started = time.monotonic()
        with pytest.raises(DeviceError, match=f"no board '{KEY}' became free within 1 s"):
            profile(fresh_copy(mlp_host_out, tmp_path / "out"), tracker=board, key=KEY, timeout=5, queue_timeout=1)
        assert time.monotonic() - started < 10
    finally:
        del held
