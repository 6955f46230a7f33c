"""A failed ``mptc compile`` as a process: nothing on stdout, the error line last on stderr.

In-process runs (``invoke``) see Python's output only. TVM's ONNX importer printed "Error
converting operator ..." on stdout before re-raising, and its C++ BlockBuilder, freed with a
block still open, warned on file descriptor 2 after the error line. These run ``mptc`` as a
process, so every byte either language writes is seen. Each case makes one converter fail: TVM's
own (a float MaxPool's zero stride), or ours (a MaxPool on packed signs, an ``ai.mptc`` layer).
"""

from __future__ import annotations

import subprocess
import sys

import onnx
import pytest
from onnx import helper

from tests.robustness.harness import DOCUMENTED_EXIT_CODES, record


def max_pool(model: onnx.ModelProto, which: int) -> onnx.NodeProto:
    return [node for node in model.graph.node if node.op_type == "MaxPool"][which]


def set_attribute(node: onnx.NodeProto, name: str, value) -> None:
    kept = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend([*kept, helper.make_attribute(name, value)])


# In conv_packed, the first MaxPool sits between two binary convs (it runs on packed signs,
# our converter), the second before the dense layers (a float MaxPool, TVM's converter).
CASES = {
    "TVM's converter: a zero stride": lambda m: set_attribute(max_pool(m, 1), "strides", [0, 0]),
    "TVM's converter: three dilations": lambda m: set_attribute(max_pool(m, 1), "dilations", [1, 1, 1]),
    "our converter: a zero stride on packed signs": lambda m: set_attribute(max_pool(m, 0), "strides", [0, 0]),
    "our converter: a window larger than the input": lambda m: set_attribute(max_pool(m, 0), "kernel_shape", [64, 64]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_failed_compile_writes_nothing_after_its_error_line(case, artifacts, tmp_path):
    model = onnx.load(artifacts.conv_packed)
    CASES[case](model)
    path, out = tmp_path / "model.onnx", tmp_path / "out"
    path.write_bytes(model.SerializeToString())
    record("compile process", path.read_bytes())
    done = subprocess.run(
        [sys.executable, "-m", "mptc.cli", "compile", str(path), "--target", "x86", "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode in DOCUMENTED_EXIT_CODES, done.stderr
    assert done.stdout == "", f"stdout of a failed compile:\n{done.stdout}"
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("mptc: error: "), f"stderr does not end in the error line:\n{done.stderr}"
    assert sum(line.startswith("mptc: error: ") for line in lines) == 1
    assert "Traceback" not in done.stderr and "BlockBuilder" not in done.stderr
    assert not out.exists() or not (out / "manifest.json").exists()
