"""TVM's thread pool is set as the manifest records, the user's environment wins, and older
manifests read as the defaults; no test asserts a speed or a CPU time."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from mptc.artifact import MANIFEST_FILE, ThreadPool, read_manifest
from mptc.cli import main
from mptc.deploy import thread_pool
from mptc.deploy.profile import profile
from tests.deploy.conftest import fresh_copy


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No pool variable set; whatever a test sets is undone after it."""
    for name in thread_pool.VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_manifest_records_the_pool(mlp_host_out: Path) -> None:
    recorded = json.loads((mlp_host_out / MANIFEST_FILE).read_text())["thread_pool"]
    assert recorded == {"threads": None, "spin_count": 1000, "bind_threads": False}
    assert read_manifest(mlp_host_out).thread_pool == ThreadPool()


def test_older_manifest_reads_as_the_defaults(mlp_host_out: Path, tmp_path: Path) -> None:
    out = fresh_copy(mlp_host_out, tmp_path / "out")
    data = json.loads((out / MANIFEST_FILE).read_text())
    del data["thread_pool"]
    (out / MANIFEST_FILE).write_text(json.dumps(data))
    assert read_manifest(out).thread_pool == ThreadPool()


def test_apply_keeps_what_the_user_set(clean_environment: pytest.MonkeyPatch) -> None:
    clean_environment.setenv("TVM_THREAD_POOL_SPIN_COUNT", "5")
    effective = thread_pool.apply(ThreadPool(threads=3))
    assert effective == {"TVM_NUM_THREADS": "3", "TVM_THREAD_POOL_SPIN_COUNT": "5", "TVM_BIND_THREADS": "0"}
    assert thread_pool.describe(effective) == "TVM's pool of 3 thread(s), spin count 5, not bound to cores"
    assert "spin count 300000, each bound to a core" in thread_pool.describe({})  # TVM's own defaults


def test_profile_reports_the_pool(mlp_host_out: Path, tmp_path: Path) -> None:
    out = fresh_copy(mlp_host_out, tmp_path / "out")
    report = profile(out, repeat=1)
    section = report["thread_pool"]
    assert section["recorded"] == dataclasses.asdict(ThreadPool())
    assert section["environment"] == {name: os.environ[name] for name in thread_pool.VARIABLES if name in os.environ}
    result = CliRunner().invoke(main, ["profile", str(out), "--repeat", "1"])
    assert result.exit_code == 0, result.output
    assert f"threads: {section['ran_with']}" in result.output


_POOL = """
import os, sys
import mptc
from mptc.artifact import ThreadPool
from mptc.deploy import thread_pool
thread_pool.apply(ThreadPool())
import tvm
before = sorted(os.sched_getaffinity(0))
tvm.get_global_func("runtime.NumThreads")()  # starts this thread's pool, which binds as told
print(before == sorted(os.sched_getaffinity(0)))
"""


@pytest.mark.skipif(len(getattr(os, "sched_getaffinity", lambda _: [])(0)) < 2, reason="needs two cores")
@pytest.mark.parametrize(("bind", "kept"), [(None, True), ("1", False)])
def test_the_pool_leaves_the_callers_affinity_alone(bind: str | None, kept: bool) -> None:
    """With one thread, TVM's binding pins the calling thread (the application's) to one core."""
    env = {k: v for k, v in os.environ.items() if k not in thread_pool.VARIABLES}
    env["TVM_NUM_THREADS"] = "1"
    if bind is not None:
        env["TVM_BIND_THREADS"] = bind  # the user's: apply() keeps it
    result = subprocess.run([sys.executable, "-c", _POOL], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-1] == str(kept)
