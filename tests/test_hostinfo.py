"""Reading ``/proc/cpuinfo``: the first core's model and flags, every core's clock."""

from pathlib import Path

import pytest

from mptc import hostinfo

X86 = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
cpu MHz\t\t: 2699.998
flags\t\t: fpu avx2 avx512f avx512_vpopcntdq
vmx flags\t: ept

processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
cpu MHz\t\t: 3100.5
flags\t\t: fpu
"""


def test_fields_of_an_x86_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cpuinfo").write_text(X86)
    monkeypatch.setattr(hostinfo, "CPUINFO", tmp_path / "cpuinfo")
    assert hostinfo.cpuinfo() == hostinfo.CpuInfo(
        model="Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz",
        flags=frozenset({"fpu", "avx2", "avx512f", "avx512_vpopcntdq"}),
        mhz=(2699.998, 3100.5),
    )


def test_an_unreadable_file_gives_empty_fields(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hostinfo, "CPUINFO", tmp_path / "missing")
    assert hostinfo.cpuinfo() == hostinfo.CpuInfo(model=None, flags=frozenset(), mhz=())
