"""``mptc train`` killed with SIGKILL at random points, then resumed until it finishes, ends with
the ticket of an uninterrupted run, and its run directory is never left corrupt.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mptc.config import parse_config
from mptc.ticket import load_ticket
from mptc.train.checkpoint import load_checkpoint

MPTC = Path(sys.executable).with_name("mptc")
TRAIN = ["train", "--width", "0.25", "--epochs", "6", "--seed", "3"]
KILLS = 4
TIMEOUT_S = 120


def start(out: Path, resume: bool) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the same arithmetic in every process
    return subprocess.Popen(
        [MPTC, *TRAIN, "--out", out, *(["--resume"] if resume else [])],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen) -> None:
    _, stderr = process.communicate(timeout=TIMEOUT_S)
    assert process.returncode == 0, stderr


def checkpoint_stamp(run: Path) -> int | None:
    """When the checkpoint was last replaced (None before the first)."""
    try:
        return (run / "checkpoint.pt").stat().st_mtime_ns
    except FileNotFoundError:
        return None


def check_intact(run: Path) -> int:
    """Every file that looks complete is complete: it parses and loads. Returns the epochs done."""
    if (run / "config.json").exists():
        parse_config((run / "config.json").read_bytes(), "config.json")
    done = load_checkpoint(run / "checkpoint.pt")["epoch"] if (run / "checkpoint.pt").exists() else 0
    if (run / "ticket.safetensors").exists():
        load_ticket(run / "ticket.safetensors")
    if (run / "metrics.json").exists():
        json.loads((run / "metrics.json").read_text())
    return done


@pytest.mark.slow
def test_killed_and_resumed_run_ends_as_an_uninterrupted_one(tmp_path):
    reference = start(tmp_path / "reference", resume=False)
    rng = random.Random(0)
    run, resume, killed_at = tmp_path / "killed", False, []
    while len(killed_at) < KILLS:
        before = checkpoint_stamp(run)
        process = start(run, resume)
        deadline = time.monotonic() + TIMEOUT_S
        while checkpoint_stamp(run) == before and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)  # importing torch takes seconds: kill inside training, after progress
        time.sleep(rng.uniform(0.0, 0.15))
        if process.poll() is not None:
            break  # it finished first
        process.send_signal(signal.SIGKILL)
        process.wait()
        killed_at.append(check_intact(run))
        resume = (run / "config.json").exists()
    else:
        process = start(run, resume)
    finish(process)
    finish(reference)
    check_intact(run)

    expected, got = load_file(tmp_path / "reference" / "ticket.safetensors"), load_file(run / "ticket.safetensors")
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    curves = [
        [epoch["test_accuracy"] for epoch in json.loads((folder / "metrics.json").read_text())["history"]]
        for folder in (tmp_path / "reference", run)
    ]
    assert curves[0] == curves[1]
    print(
        f"killed after epochs {killed_at}, resumed each time: the uninterrupted run's ticket ({len(expected)} tensors equal)"
    )
