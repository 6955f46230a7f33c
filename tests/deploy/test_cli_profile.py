"""`mptc profile` and `mptc serve-device` through click: help that teaches, one-line errors."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mptc.cli import main
from tests.deploy.conftest import fresh_copy


def _run(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.mark.parametrize(
    ("command", "teaches"), [("profile", "--emulate rpi4"), ("serve-device", "libtvm_compiler.so")]
)
def test_help_teaches_with_an_example(command: str, teaches: str) -> None:
    result = _run(command, "--help")
    assert result.exit_code == 0
    assert "Examples:" in result.output and teaches in result.output


def test_profile_on_this_host(mlp_host_out: Path) -> None:
    result = _run("profile", str(mlp_host_out), "--repeat", "3")
    assert result.exit_code == 0, result.output
    assert "latency: median" in result.output and "outputs: match the reference" in result.output
    assert "EMULATED" not in result.output


def test_arm_module_on_this_host_is_one_line(mlp_rpi4_out: Path) -> None:
    result = _run("profile", str(mlp_rpi4_out))
    assert result.exit_code == 3
    assert result.output.count("\n") == 1 and result.output.startswith("mptc: error: ")


def test_outputs_that_differ_exit_5_with_the_report_written(mlp_host_out: Path, tmp_path: Path) -> None:
    out = fresh_copy(mlp_host_out, tmp_path / "out")
    with np.load(out / "reference.npz") as arrays:
        np.savez(out / "reference.npz", x=arrays["x"], y=arrays["y"] + 1.0)
    result = _run("profile", str(out), "--repeat", "2")
    assert result.exit_code == 5
    assert "outputs differ from the reference" in result.output
    assert json.loads((out / "profile.json").read_text())["outputs_match"] is False


def test_rpc_and_tracker_together_is_a_usage_error(mlp_host_out: Path) -> None:
    result = _run("profile", str(mlp_host_out), "--rpc", "127.0.0.1:1", "--tracker", "127.0.0.1:2", "--key", "k")
    assert result.exit_code == 2 and "not both" in result.output


@pytest.mark.emulated
def test_dotprod_module_on_emulated_rpi4_fails_cleanly(dotprod_out: Path, tmp_path: Path) -> None:
    out = fresh_copy(dotprod_out, tmp_path / "out")
    result = _run("profile", str(out), "--emulate", "rpi4", "--repeat", "2")
    assert result.exit_code == 6, result.output
    message = result.output.strip()
    assert "\n" not in message and "Traceback" not in message
    assert "board's CPU (cortex-a72) lacks an instruction the module uses" in message
    assert "SIGILL" in message and "+dotprod is not available on cortex-a72" in message
    assert not (out / "profile.json").exists()


@pytest.mark.emulated
def test_dotprod_module_really_executes_sdot(dotprod_out: Path) -> None:
    """The SIGILL test above means something only if the module's code holds dot-product instructions."""
    objdump = shutil.which("aarch64-linux-gnu-objdump")
    assert objdump, "aarch64-linux-gnu-objdump comes with binutils-aarch64-linux-gnu (scripts/setup_arm_emulator.sh)"
    listing = subprocess.run(
        [objdump, "-d", str(dotprod_out / "module.so")], capture_output=True, text=True, check=True
    ).stdout
    assert "\tsdot\t" in listing
