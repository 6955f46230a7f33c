"""Fixtures of the robustness suite: real artifacts made once per session, a full disk, and the
count of distinct bad inputs tried, printed at the end of the session."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.robustness.harness import tried


def pytest_terminal_summary(terminalreporter) -> None:
    if tried():
        terminalreporter.write_line(
            f"robustness: {tried()} distinct bad inputs tried, every one refused cleanly or read correctly"
        )


@dataclass(frozen=True)
class Artifacts:
    """Real inputs made once per session; tests copy them before damaging them."""

    run: Path  # a finished tiny MLP run directory (config, checkpoint, ticket, metrics)
    model: Path  # its ticket exported to ONNX
    packed: Path  # that model after `mptc optimize`
    conv_packed: Path  # a conv4 MPT-1/1 model, packed: BinaryConv with binary inputs

    def onnx_sources(self) -> dict[str, bytes]:
        return {path.name: path.read_bytes() for path in (self.model, self.packed, self.conv_packed)}


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> Artifacts:
    from mptc.config import TrainConfig
    from mptc.export import export_model, export_run
    from mptc.passes.pipeline import optimize_file
    from mptc.train.loop import train
    from tests.export.conftest import make_ticket

    folder = tmp_path_factory.mktemp("artifacts")
    run = train(
        TrainConfig(model="mlp", method="biprop", sparsity=0.5, width=0.25, epochs=1, seed=1), folder / "run"
    ).run_dir
    export_run(run, folder / "model.onnx")
    optimize_file(folder / "model.onnx", folder / "packed.onnx")
    model, config, dataset = make_ticket("conv4", "biprop-1-1")
    export_model(model, config, dataset, folder / "conv.onnx")
    optimize_file(folder / "conv.onnx", folder / "conv-packed.onnx")
    return Artifacts(run, folder / "model.onnx", folder / "packed.onnx", folder / "conv-packed.onnx")


@pytest.fixture
def copy_run(artifacts, tmp_path):
    """``copy_run()`` -> a fresh copy of the finished run directory to damage."""

    def make(name: str = "run") -> Path:
        return Path(shutil.copytree(artifacts.run, tmp_path / name))

    return make


@pytest.fixture(scope="session")
def tiny_disk(tmp_path_factory):
    """A 64 KiB tmpfs: a full disk for real (ENOSPC), unmounted at the end of the session."""
    mount_point = tmp_path_factory.mktemp("tiny-disk")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"a full disk is simulated with a 64 KiB tmpfs, and mounting one needs root: {done.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=False)
