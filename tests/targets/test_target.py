"""Target resolution: boards, host detection, JSON override, typed errors."""

import json

import pytest

from mptc.errors import InputError, UnsupportedError
from mptc.targets.target import resolve_target


@pytest.mark.parametrize(
    "board, mcpu, features",
    [("rpi4", "cortex-a72", {"has_asimd"}), ("rpi5", "cortex-a76", {"has_asimd", "has_dotprod"}), ("jetson-orin", "cortex-a78ae", {"has_asimd"})],
)
def test_boards_map_to_their_cpus(board, mcpu, features):
    target = resolve_target("arm", board)
    exported = target.tvm_target().export()
    assert target.family == "arm" and exported["mcpu"] == mcpu and "arm_cpu" in exported["keys"]
    assert all(exported[f"feature.{f}"] for f in features)


def test_cuda_defaults_to_sm90_with_this_host_and_orin_to_sm87_with_its_cpu():
    assert resolve_target("cuda").tvm_target().export()["arch"] == "sm_90"
    orin = resolve_target("cuda", "jetson-orin").tvm_target()
    assert orin.export()["arch"] == "sm_87" and orin.host.export()["mcpu"] == "cortex-a78ae"


def test_x86_is_the_host():
    target = resolve_target("x86")
    assert target.family == "x86" and target.spec["kind"] == "llvm" and "mtriple" not in target.spec


@pytest.mark.parametrize("target, board", [("riscv", None), ("arm", "pi-zero"), ("x86", "rpi4"), ("cuda", "rpi5")])
def test_unknown_or_impossible_targets_are_named(target, board):
    with pytest.raises(UnsupportedError, match=repr(board) if board else repr(target)):
        resolve_target(target, board)


def test_target_json_replaces_the_builtin_dict(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "neoverse-n1"}))
    assert resolve_target("arm", target_json=path).tvm_target().export()["mcpu"] == "neoverse-n1"
    with pytest.raises(InputError, match="arm target"):
        resolve_target("x86", target_json=path)
