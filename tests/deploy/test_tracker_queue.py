"""A device farm: two ``mptc profile`` runs asking one tracker for its only board queue, not fail."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mptc.deploy.server import RpcServer
from tests.deploy.conftest import fresh_copy

KEY = "host-queue"  # a key of its own: other tests' boards on the package's tracker stay out of it
# Calls per sample: several seconds of timing per session, so that the gap between the two ends
# (one timing, when queued) stands clear of the noise of a loaded host (with about 1.4 s of timing
# each, the first's report writing overlapping the second's timing made the gap fall short once).
TIMED_CALLS = "100000"


@pytest.mark.slow
def test_two_profiles_queue_for_the_only_board(mlp_host_out: Path, tracker: str, tmp_path: Path) -> None:
    outs = [fresh_copy(mlp_host_out, tmp_path / f"out{i}") for i in range(2)]
    mptc = Path(sys.executable).with_name("mptc")
    finished: dict[int, float] = {}

    def profile(index: int) -> subprocess.CompletedProcess:
        command = [
            mptc,
            "profile",
            outs[index],
            "--tracker",
            tracker,
            "--key",
            KEY,
            "--repeat",
            "40",
            "--number",
            TIMED_CALLS,
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        finished[index] = time.monotonic()
        return done

    with RpcServer([sys.executable], tracker=tracker, key=KEY):
        results: list[subprocess.CompletedProcess] = [None, None]  # type: ignore[list-item]
        threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, profile(i))) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    for result in results:
        assert result.returncode == 0, result.stdout + result.stderr
    reports = [json.loads((out / "profile.json").read_text()) for out in outs]
    assert all(report["device"]["connection"] == "tracker" for report in reports)
    # One board: the session that ended second held it only after the first let go, so it ended
    # at least its own timing later (sessions that overlapped would end together).
    later = max(range(2), key=finished.__getitem__)
    busy_s = sum(reports[later]["samples_ms"]) * reports[later]["number"] / 1000
    print(
        f"one board, two profile runs: they ended {abs(finished[1] - finished[0]):.1f} s apart, the later one timed {busy_s:.1f} s"
    )
    assert abs(finished[1] - finished[0]) >= 0.7 * busy_s, (finished, busy_s)
