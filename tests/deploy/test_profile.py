"""profile(): end to end on emulated boards over RPC, locally, and every failure as one clear error."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from mptc.deploy.profile import PROFILE, compare_outputs, profile
from mptc.deploy.rpc import connect
from mptc.deploy.server import RpcServer, free_port
from mptc.errors import DeviceError, InputError, UsageError
from tests.deploy.conftest import fresh_copy

REPORT_KEYS = {
    "created",
    "mptc_version",
    "module",
    "target",
    "board",
    "emulated",
    "device",
    "latency_ms",
    "samples_ms",
    "repeat",
    "number",
    "outputs_match",
    "max_abs_error",
    "max_rel_error",
    "rel_tolerance",
    "argmax_match",
}


def _check_report(out: Path, report: dict, *, emulated: bool, repeat: int) -> None:
    assert json.loads((out / PROFILE).read_text()) == report
    assert REPORT_KEYS <= set(report)
    assert report["emulated"] is emulated and ("note" in report) is emulated
    assert report["outputs_match"] and report["argmax_match"]
    assert report["repeat"] == repeat and len(report["samples_ms"]) == repeat
    latency = report["latency_ms"]
    assert 0 < latency["min"] <= latency["median"] <= latency["max"]


@pytest.mark.emulated
def test_rpi4_through_a_tracker_end_to_end(mlp_rpi4_out: Path, rpi4_on_tracker: str) -> None:
    report = profile(mlp_rpi4_out, tracker=rpi4_on_tracker, key="rpi4", repeat=5)
    _check_report(mlp_rpi4_out, report, emulated=True, repeat=5)
    # Nobody said --emulate: the server's work path told the client it is an emulator.
    assert report["device"]["emulated_board"] == "rpi4" and report["device"]["qemu_cpu"] == "cortex-a72"
    assert report["device"]["connection"] == "tracker"


@pytest.mark.emulated
def test_rpi5_through_rpc_end_to_end_with_dotprod(dotprod_out: Path, rpi5_served: str) -> None:
    report = profile(dotprod_out, rpc=rpi5_served, repeat=5)
    _check_report(dotprod_out, report, emulated=True, repeat=5)
    assert report["max_abs_error"] == 0.0  # int8 x int8 -> int32 is exact
    assert report["device"]["emulated_board"] == "rpi5"
    assert "emulated by qemu-aarch64 -cpu cortex-a76" in report["device"]["description"]


@pytest.mark.emulated
def test_wrong_tracker_key_names_the_registered_ones(mlp_rpi4_out: Path, rpi4_on_tracker: str) -> None:
    started = time.monotonic()
    with pytest.raises(DeviceError, match=r"no board with key 'rpi3' \(keys registered: rpi4\)"):
        profile(mlp_rpi4_out, tracker=rpi4_on_tracker, key="rpi3")
    assert time.monotonic() - started < 10


@pytest.mark.emulated
def test_x86_module_sent_to_an_arm_board(mlp_host_out: Path, rpi4_on_tracker: str) -> None:
    with pytest.raises(
        InputError, match=r"is an x86_64 module .* cannot run on the emulated Raspberry Pi 4 .*\(aarch64\)"
    ):
        profile(mlp_host_out, tracker=rpi4_on_tracker, key="rpi4")


@pytest.mark.parametrize("option", ["rpc", "tracker"])
def test_unreachable_host_fails_fast(mlp_host_out: Path, option: str) -> None:
    address = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(DeviceError, match=f"cannot reach the .* at {address}: .*refused"):
        profile(mlp_host_out, **{option: address}, key="rpi4")
    assert time.monotonic() - started < 5


def test_something_else_listening_is_not_a_server() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(DeviceError, match=f"cannot reach the RPC server at {address}: no answer within 1 s"):
            connect(rpc=address, timeout=1.0)


def test_malformed_address() -> None:
    with pytest.raises(UsageError, match="--rpc expects HOST:PORT"):
        connect(rpc="raspberrypi")


def test_arm_module_run_on_this_x86_host(mlp_rpi4_out: Path) -> None:
    with pytest.raises(InputError, match=r"aarch64 module .* cannot run on this host \(x86_64\).*--emulate rpi4"):
        profile(mlp_rpi4_out)


def test_host_module_runs_locally(mlp_host_out: Path) -> None:
    report = profile(mlp_host_out, repeat=3)
    _check_report(mlp_host_out, report, emulated=False, repeat=3)
    assert report["device"]["connection"] == "local"


def test_arm_module_sent_to_an_x86_server(mlp_rpi4_out: Path) -> None:
    with RpcServer([sys.executable]) as server:  # not an emulator: its architecture is unknown up front
        with pytest.raises(DeviceError, match="loading module.so failed: .*module.so is an aarch64 library"):
            profile(mlp_rpi4_out, rpc=server.address)


def test_server_killed_mid_run_keeps_the_earlier_report(mlp_host_out: Path, tmp_path: Path) -> None:
    out = fresh_copy(mlp_host_out, tmp_path / "out")
    (out / PROFILE).write_text('{"stale": "from an earlier run"}')
    outcome: dict[str, BaseException] = {}

    def run() -> None:
        try:
            profile(out, rpc=server.address, repeat=100_000, number=100)
        except BaseException as e:  # noqa: BLE001 (handed to the main thread)
            outcome["error"] = e

    with RpcServer([sys.executable]) as server:
        worker = threading.Thread(target=run)
        worker.start()
        deadline = time.monotonic() + 60
        while "load_module" not in server.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        os.killpg(server.pid, signal.SIGKILL)
        worker.join(timeout=60)
    assert not worker.is_alive()
    assert isinstance(outcome.get("error"), DeviceError)
    assert "connection was lost" in str(outcome["error"])
    assert (out / PROFILE).read_text() == '{"stale": "from an earlier run"}'  # kept until a new one is complete


def test_outputs_compared_relatively_and_by_argmax() -> None:
    ref = np.array([[1.0, 3.0, 2.0]])
    assert compare_outputs(ref + 1e-5, ref)["outputs_match"]
    assert not compare_outputs(ref + 1e-3, ref)["outputs_match"]
    assert not compare_outputs(np.array([[1.0, 2.0, 3.0]]), ref)["argmax_match"]
    assert not compare_outputs(ref[0], ref)["outputs_match"]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("side", ["output", "expected"])
def test_nonfinite_outputs_never_match(bad: float, side: str) -> None:
    ref = np.array([[1.0, 3.0, 2.0]])
    damaged = ref.copy()
    damaged[0, 1] = bad
    output, expected = (damaged, ref) if side == "output" else (ref, damaged)
    result = compare_outputs(output, expected)
    assert not result["outputs_match"] and "of 3 values" in result[f"{side}_nonfinite"]
    json.dumps(result, allow_nan=False)  # the report stays valid JSON
