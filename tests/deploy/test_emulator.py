"""The board table, the set-up check, and how a client recognises an emulator."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from mptc.deploy import emulator
from mptc.errors import DeviceError, InputError
from tests.deploy.conftest import REPO


def test_boards_use_their_own_cores() -> None:
    assert {name: board.qemu_cpu for name, board in emulator.BOARDS.items()} == {
        "rpi4": "cortex-a72",
        "rpi5": "cortex-a76",
        "jetson-orin": "neoverse-n1",
    }


def test_unknown_board_lists_the_choices() -> None:
    with pytest.raises(InputError, match="expected one of rpi4, rpi5, jetson-orin"):
        emulator.get_board("rpi3")


def test_missing_setup_says_how_to_fix_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPTC_ARM_ROOT", str(tmp_path))
    with pytest.raises(DeviceError, match="not set up .* run `make arm-emulator` in the repository"):
        emulator.emulated_board("rpi4")


def test_board_is_read_back_from_the_server_workpath() -> None:
    path = "/tmp/mptc-emulated-jetson-orin-k2j3/tmpab12/x"
    assert emulator.board_from_workpath(path) is emulator.BOARDS["jetson-orin"]
    assert emulator.board_from_workpath("/tmp/tmpab12/x") is None


def test_missing_features_name_the_culprit() -> None:
    assert emulator.missing_features(emulator.BOARDS["rpi4"], ["+neon", "+dotprod"]) == ["+dotprod"]
    assert emulator.missing_features(emulator.BOARDS["rpi5"], ["+neon", "+dotprod", "-sve"]) == []


def test_setup_script_is_fast_and_silent_once_done(arm_ready: Path) -> None:
    started = time.monotonic()
    result = subprocess.run([str(REPO / emulator.SETUP_SCRIPT)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout == "" and result.stderr == ""
    assert time.monotonic() - started < 5
