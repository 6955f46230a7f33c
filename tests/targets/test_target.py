"""Target resolution: boards, host detection, JSON override, typed errors."""

import json

import pytest
from tvm.target import codegen

from mptc import hostinfo
from mptc.errors import InputError, UnsupportedError
from mptc.targets.target import resolve_target, x86_features


@pytest.mark.parametrize(
    "board, mcpu, features",
    [
        ("rpi4", "cortex-a72", {"has_asimd"}),
        ("rpi5", "cortex-a76", {"has_asimd", "has_dotprod"}),
        ("jetson-orin", "cortex-a78ae", {"has_asimd"}),
    ],
)
def test_boards_map_to_their_cpus(board, mcpu, features):
    target = resolve_target("arm", board)
    exported = target.tvm_target().export()
    assert target.family == "arm" and exported["mcpu"] == mcpu and "arm_cpu" in exported["keys"]
    assert all(exported[f"feature.{f}"] for f in features)


def test_board_dicts_are_exactly_the_catalogue_cpus():
    neon_dot_fp16 = ["+neon", "+dotprod", "+fullfp16"]
    assert {board: resolve_target("arm", board).spec for board in ("rpi4", "rpi5", "jetson-orin")} == {
        "rpi4": {
            "kind": "llvm",
            "mtriple": "aarch64-linux-gnu",
            "mcpu": "cortex-a72",
            "mattr": ["+neon"],
            "num-cores": 4,
        },
        "rpi5": {
            "kind": "llvm",
            "mtriple": "aarch64-linux-gnu",
            "mcpu": "cortex-a76",
            "mattr": neon_dot_fp16,
            "num-cores": 4,
        },
        "jetson-orin": {
            "kind": "llvm",
            "mtriple": "aarch64-linux-gnu",
            "mcpu": "cortex-a78ae",
            "mattr": neon_dot_fp16,
            "num-cores": 6,
        },
    }
    assert resolve_target("cuda", "jetson-orin").spec == {
        "kind": "cuda",
        "arch": "sm_87",
        "host": resolve_target("arm", "jetson-orin").spec,
    }


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
    path.write_text(json.dumps({"kind": "llvm", "num-cores": "four"}))
    with pytest.raises(InputError, match="not a valid TVM target"):
        resolve_target("x86", target_json=path)


def test_x86_features_fall_back_to_cpuinfo_flags_in_llvm_spelling(tmp_path, monkeypatch):
    def refuse(_target):
        raise RuntimeError("no features")

    (tmp_path / "cpuinfo").write_text("flags\t\t: avx2 avx512_vpopcntdq\n")
    monkeypatch.setattr(hostinfo, "CPUINFO", tmp_path / "cpuinfo")
    monkeypatch.setattr(codegen, "llvm_get_cpu_features", refuse)
    assert x86_features(None) == {"avx2", "avx512vpopcntdq"}
