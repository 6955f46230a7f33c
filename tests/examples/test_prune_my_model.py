"""examples/prune_my_model.py runs end to end: a user's own ResNet, biprop, x86 module == PyTorch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "prune_my_model.py"


@pytest.mark.slow
def test_prune_my_model_compiles_a_module_that_matches_pytorch(tmp_path):
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "--out", str(tmp_path), "--epochs", "2"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "2"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "trained prune_my_model:SmallResNet" in result.stdout
    assert "argmax agreement 100.0%" in result.stdout
    assert (tmp_path / "x86" / "module.so").is_file()
