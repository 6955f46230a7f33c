"""The stage check of the pipeline; the whole pipeline runs in tests/report/test_sweep.py."""

from __future__ import annotations

import pytest

from mptc.errors import VerificationError
from mptc.pipeline import MAX_STAGE_DROP, DeviceOptions, check_stages


def test_noise_between_stages_passes() -> None:
    check_stages({"pytorch": 0.90, "onnx": 0.90 - MAX_STAGE_DROP / 2, "packed_onnx": 0.90, "module": None})


def test_a_drop_names_both_stages() -> None:
    with pytest.raises(VerificationError, match=r"from 0\.9000 \(onnx\) to 0\.8000 \(packed_onnx\)"):
        check_stages({"pytorch": 0.90, "onnx": 0.90, "packed_onnx": 0.80, "module": None})


def test_a_stage_not_measured_is_skipped() -> None:
    with pytest.raises(VerificationError, match=r"\(packed_onnx\) to 0\.5000 \(module\)"):
        check_stages({"pytorch": 0.90, "onnx": None, "packed_onnx": 0.90, "module": 0.50})


@pytest.mark.parametrize(
    ("device", "here"),
    [
        (DeviceOptions(), True),
        (DeviceOptions(target="arm", board="rpi4"), False),
        (DeviceOptions(rpc="127.0.0.1:9090"), False),
        (DeviceOptions(emulate="rpi4"), False),
    ],
)
def test_module_accuracy_only_for_modules_run_here(device: DeviceOptions, here: bool) -> None:
    assert device.runs_here is here
