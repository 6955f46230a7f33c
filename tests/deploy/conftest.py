"""Fixtures for tests/deploy: tiny compiled models (OUT/ folders as `mptc compile` writes them) and
emulated boards shared by every test of the package (an emulated TVM import costs ~7 s)."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mptc import __version__
from mptc.artifact import (
    MODULE_FILE,
    REFERENCE_FILE,
    Manifest,
    Sizes,
    SourceModel,
    TargetInfo,
    TensorInfo,
    Versions,
    write_manifest,
    write_reference,
)
from mptc.deploy import emulator
from mptc.deploy.probe import answers, tracker_handshake
from mptc.deploy.server import free_port
from mptc.errors import DeviceError
from mptc.targets.cross import aarch64_linker

REPO = Path(__file__).resolve().parents[2]
HOST = {"kind": "llvm"}
RPI4 = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a72", "mattr": ["+neon"]}
RPI5_DOTPROD = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a76", "mattr": ["+neon", "+dotprod"]}


def _mlp() -> tuple[Any, np.ndarray, np.ndarray]:
    """A 16-32-10 ReLU MLP imported from ONNX, its sample input and numpy's output."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from tvm.relax.frontend.onnx import from_onnx

    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((16, 32)).astype(np.float32)
    w2 = rng.standard_normal((32, 10)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w1"], ["h"]),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("MatMul", ["r", "w2"], ["y"]),
        ],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    onnx.checker.check_model(model)
    x = rng.standard_normal((1, 16)).astype(np.float32)
    return from_onnx(model, shape_dict={"x": [1, 16]}), x, np.maximum(x @ w1, 0) @ w2


def _int8_dense() -> tuple[Any, np.ndarray, np.ndarray]:
    """y = x . W^T with int8 operands and int32 sums: with +dotprod LLVM vectorizes it into sdot."""
    from tvm import relax, te

    rows, depth = 64, 256
    rng = np.random.default_rng(1)
    weight = rng.integers(-128, 128, (rows, depth)).astype(np.int8)

    def dense(a: te.Tensor, w: te.Tensor) -> te.Tensor:
        k = te.reduce_axis((0, depth), "k")
        return te.compute((1, rows), lambda i, j: te.sum(a[i, k].astype("int32") * w[j, k].astype("int32"), axis=k))

    builder = relax.BlockBuilder()
    x_var = relax.Var("x", relax.TensorType((1, depth), "int8"))
    with builder.function("main", [x_var]):
        with builder.dataflow():
            out = builder.emit_output(builder.emit_te(dense, x_var, relax.const(weight)))
        builder.emit_func_output(out)
    x = rng.integers(-128, 128, (1, depth)).astype(np.int8)
    return builder.get(), x, x.astype(np.int32) @ weight.astype(np.int32).T


def write_out(out: Path, built: tuple[Any, np.ndarray, np.ndarray], target: dict[str, Any], board: str | None) -> Path:
    """Compile for ``target`` and write module.so, manifest.json and reference.npz into ``out``, as
    `mptc compile` does (no ONNX model behind them: the source model and layer records are empty)."""
    import tvm

    mod, x, y = built
    out.mkdir(parents=True)
    executable = tvm.compile(mod, target=tvm.target.Target(target))
    cross = target.get("mtriple", "").startswith("aarch64")
    fcompile = aarch64_linker().fcompile() if cross else None
    executable.export_library(str(out / MODULE_FILE), fcompile=fcompile)
    family = "arm" if cross else "x86"
    manifest = Manifest(
        versions=Versions(mptc=__version__, tvm=tvm.__version__),
        target=TargetInfo(name=family, family=family, board=board, spec=target),
        source_model=SourceModel(path=None, sha256=hashlib.sha256(b"").hexdigest(), bytes=0),
        input=TensorInfo(name="x", shape=list(x.shape), dtype=str(x.dtype)),
        output=TensorInfo(name="y", shape=list(y.shape), dtype=str(y.dtype)),
        files={"module": MODULE_FILE, "reference": REFERENCE_FILE},
        reference_runtime="numpy",
        sparse_break_even=0.5,
        layers=[],
        sizes=Sizes(
            module_bytes=(out / MODULE_FILE).stat().st_size,
            source_model_bytes=0,
            packed_weight_bytes=0,
            lowered_weight_bytes=0,
        ),
        module_sha256=hashlib.sha256((out / MODULE_FILE).read_bytes()).hexdigest(),
    )
    write_manifest(out, manifest)
    write_reference(out, x, y)
    return out


def fresh_copy(src: Path, dst: Path) -> Path:
    """A private copy of an OUT/ folder, for a test that edits it."""
    return Path(shutil.copytree(src, dst, ignore=shutil.ignore_patterns("profile.json")))


@pytest.fixture(scope="session")
def arm_ready() -> Path:
    """The emulator's launcher; runs the set-up if needed and skips only if it cannot be done here."""
    try:
        return emulator.launcher()
    except DeviceError:
        pass
    result = subprocess.run([str(REPO / emulator.SETUP_SCRIPT)], capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"ARM emulation cannot be set up on this machine: {reason}")
    return emulator.launcher()


@pytest.fixture(scope="session")
def mlp_host_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_out(tmp_path_factory.mktemp("mlp") / "host", _mlp(), HOST, None)


@pytest.fixture(scope="session")
def mlp_rpi4_out(tmp_path_factory: pytest.TempPathFactory, arm_ready: Path) -> Path:
    return write_out(tmp_path_factory.mktemp("mlp") / "rpi4", _mlp(), RPI4, "rpi4")


@pytest.fixture(scope="session")
def dotprod_out(tmp_path_factory: pytest.TempPathFactory, arm_ready: Path) -> Path:
    return write_out(tmp_path_factory.mktemp("int8") / "rpi5", _int8_dense(), RPI5_DOTPROD, "rpi5")


@pytest.fixture(scope="package")
def tracker() -> Iterator[str]:
    """A TVM tracker on loopback in its own process group, ``HOST:PORT``."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "tvm.exec.rpc_tracker",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--port-end",
        str(port + 1),
        "--silent",
    ]
    proc = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )  # --silent: the pipe stays near empty
    deadline = time.monotonic() + 60
    while True:
        try:
            tracker_handshake("127.0.0.1", port, timeout=1.0)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                pytest.fail(f"the TVM tracker did not start: {proc.communicate()[1][-2000:]}")
            time.sleep(0.25)
    yield f"127.0.0.1:{port}"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.fixture(scope="package")
def rpi4_on_tracker(arm_ready: Path, tracker: str) -> Iterator[str]:
    """An emulated Raspberry Pi 4 registered with the tracker under key ``rpi4``; yields the tracker."""
    with emulator.emulated_board("rpi4", tracker=tracker, key="rpi4"):
        yield tracker


@pytest.fixture(scope="package")
def rpi5_served(arm_ready: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An emulated Raspberry Pi 5 started the way users do: `mptc serve-device --emulate rpi5`."""
    port = free_port()
    command = [
        sys.executable,
        "-c",
        "from mptc.cli import main; main()",
        "serve-device",
        "--emulate",
        "rpi5",
        "--port",
        str(port),
    ]
    log = tmp_path_factory.mktemp("serve-device") / "stderr.log"
    with open(log, "w") as stderr:  # a file, not a pipe: nobody drains a pipe, and a full one blocks the server
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
    deadline = time.monotonic() + 120
    while not answers("127.0.0.1", port):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"mptc serve-device --emulate rpi5 did not start: {log.read_text()[-2000:]}")
        time.sleep(0.25)
    yield f"127.0.0.1:{port}"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert not answers("127.0.0.1", port, timeout=0.5), "serve-device left its server running"
