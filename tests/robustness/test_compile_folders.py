"""``mptc compile``'s output folder is written as a whole, or not at all.

* A compile that fails after packing left ``OUT/packed.onnx`` behind; one killed while replacing
  a finished folder left ``module.so`` of one build beside the manifest of another. Now OUT/ is
  built beside itself and swapped in (:func:`mptc.io.atomic_folder`): checked here on failures
  injected at every step of the swap, on a process killed at random moments, and on real compiles
  that fail late.
* A folder holding files mptc did not write would be swept away by that swap: it is refused
  (exit 7) before any work, and left as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from mptc.artifact import OUT_FILES
from mptc.deploy.artifact import load_compiled
from mptc.errors import OutputError
from mptc.io import atomic_folder
from tests.robustness.harness import FUZZ, assert_refused, invoke, record

NAMES = sorted(OUT_FILES)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())} if folder.is_dir() else {}


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.parent.glob(f".{folder.name}.*"))


# --- the swap itself, failures injected ----------------------------------------------------------

FILES = st.dictionaries(st.sampled_from(NAMES), st.binary(max_size=64), max_size=5)


@settings(FUZZ, max_examples=120)
@given(
    old=st.one_of(st.none(), FILES),
    new=FILES,
    fail_at=st.one_of(st.none(), st.integers(0, 8)),
    failure=st.sampled_from(["body", "rename", "no space"]),
)
def test_a_swap_that_fails_leaves_the_previous_folder(tmp_path_factory, old, new, fail_at, failure):
    """``fail_at`` None: the swap succeeds; else the body fails while writing file ``fail_at``, or
    the ``fail_at``-th rename of the swap fails (a rename onto another disk, a full disk)."""
    target = tmp_path_factory.mktemp("swap") / "out"
    if old is not None:
        target.mkdir()
        for name, data in old.items():
            (target / name).write_bytes(data)
    before = snapshot(target)
    record("atomic folder", repr(old), repr(new), repr(fail_at), failure)
    renames = 0
    real_rename = os.rename

    def rename(source, destination):
        nonlocal renames
        renames += 1
        if failure != "body" and fail_at is not None and renames == fail_at:
            raise OSError(28 if failure == "no space" else 18, "injected failure")
        real_rename(source, destination)

    failed = False
    try:
        os.rename = rename
        with atomic_folder(target, OUT_FILES) as staging:
            for index, (name, data) in enumerate(new.items()):
                if failure == "body" and index == fail_at:
                    raise OSError(28, "No space left on device")
                (staging / name).write_bytes(data)
    except OutputError:
        failed = True
    finally:
        os.rename = real_rename
    after = snapshot(target)
    if failed:
        assert after == before and (target.is_dir() or old is None), "a failed swap changed the folder"
    else:
        assert after == new and target.is_dir()
    assert leftovers(target) == [], "a temporary folder was left beside the output"


KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from mptc.artifact import OUT_FILES
    from mptc.io import atomic_folder
    target, tag = Path(sys.argv[1]), sys.argv[2]
    with atomic_folder(target, OUT_FILES) as staging:
        for name in sorted(OUT_FILES):
            (staging / name).write_text(tag + name)
            time.sleep(0.01)
    print("done", flush=True)
    """
)


@settings(FUZZ, max_examples=10)
@given(delay=st.floats(0.0, 0.25))
def test_a_writer_killed_at_any_moment_leaves_one_whole_build(tmp_path_factory, delay):
    """Killed with SIGKILL mid-write: OUT/ is the previous build, the new one, or (killed between
    the two renames) absent with the previous build whole in ``.out.*.old.tmp`` beside it."""
    target = tmp_path_factory.mktemp("killed") / "out"
    target.mkdir()
    for name in OUT_FILES:
        (target / name).write_text("old" + name)
    record("atomic folder killed after", f"{delay:.3f}")
    writer = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(target), "new"], stdout=subprocess.PIPE, text=True
    )
    time.sleep(delay)
    writer.send_signal(signal.SIGKILL)
    writer.communicate()
    builds = {tag for tag in ("old", "new") if snapshot(target) == {n: (tag + n).encode() for n in OUT_FILES}}
    if target.exists():
        assert len(builds) == 1, f"OUT/ mixes two builds: {sorted(snapshot(target))}"
    else:
        kept = [p for p in target.parent.glob(".out.*.old.tmp")]
        assert len(kept) == 1 and snapshot(kept[0]) == {n: ("old" + n).encode() for n in OUT_FILES}


# --- real compiles -------------------------------------------------------------------------------


def unpacked_model(rng: np.random.Generator, tail: str, width: int) -> onnx.ModelProto:
    """A ternary Gemm (packed by compile first), then ``tail``, which fails the compile after packing."""
    weight = rng.choice([-0.37, 0.0, 0.37], size=(10, width)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w"], ["h"], transB=1), helper.make_node(tail, ["h"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 10])],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished OUT/ of a model that compiles, to compile failing models over."""
    folder = tmp_path_factory.mktemp("finished")
    onnx.save(unpacked_model(np.random.default_rng(0), "Relu", 70), folder / "good.onnx")
    result = invoke(["compile", folder / "good.onnx", "--target", "x86", "-o", folder / "out"])
    assert result.exit_code == 0, result.output
    return folder / "out"


@settings(FUZZ, max_examples=6)
@given(
    tail=st.sampled_from(["Sqrt", "Log", "NonZero"]),  # NaN on a N(0, 1) input (exit 5); ort refuses it (3)
    width=st.integers(16, 96),
    seed=st.integers(0, 2**16),
    over_a_build=st.booleans(),
)
def test_a_compile_that_fails_after_packing_leaves_nothing(tmp_path_factory, finished, tail, width, seed, over_a_build):
    folder = tmp_path_factory.mktemp("failing")
    onnx.save(unpacked_model(np.random.default_rng(seed), tail, width), folder / "model.onnx")
    out = folder / "out"
    if over_a_build:
        shutil.copytree(finished, out)
    before = snapshot(out)
    record("compile", tail, str(width), str(seed))
    result = invoke(["compile", folder / "model.onnx", "--target", "x86", "-o", out])
    assert_refused(result, *([] if over_a_build else [out]), codes=frozenset({3, 5}))
    assert snapshot(out) == before and leftovers(out) == []
    if over_a_build:
        load_compiled(out)  # still the previous, whole build


@settings(FUZZ, max_examples=20)
@given(
    foreign=st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/\0"), min_size=1, max_size=12
    ).filter(lambda name: name not in OUT_FILES and name not in (".", "..") and not name.endswith(".tmp")),
    kind=st.sampled_from(["file", "folder", "link"]),
)
def test_a_folder_holding_other_files_is_left_alone(tmp_path_factory, finished, foreign, kind):
    folder = tmp_path_factory.mktemp("foreign")
    out = shutil.copytree(finished, folder / "out")
    path = out / foreign
    if kind == "file":
        path.write_bytes(b"the user's")
    elif kind == "folder":
        path.mkdir()
    else:
        path.symlink_to(out / "manifest.json")
    before = snapshot(out) if kind != "folder" else None
    record("compile into a folder holding", kind, foreign)
    started = time.monotonic()
    result = invoke(["compile", finished / "source.onnx", "--target", "x86", "-o", out])
    assert_refused(result, codes=frozenset({7}))
    assert "mptc did not write there" in result.stderr
    assert path.exists() or path.is_symlink()
    if before is not None:
        assert snapshot(out) == before
    assert time.monotonic() - started < 20, "refused only after compiling"


def test_a_compile_over_a_finished_build_replaces_it_whole(tmp_path, finished):
    """A second build (another model) over the first: every file and the checksum are the new build's."""
    out = shutil.copytree(finished, tmp_path / "out")
    (out / "profile.json").write_text("{}")  # the old build's report goes with it
    onnx.save(unpacked_model(np.random.default_rng(7), "Relu", 40), tmp_path / "other.onnx")
    result = invoke(["compile", tmp_path / "other.onnx", "--target", "x86", "-o", out])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["module_sha256"] == hashlib.sha256((out / "module.so").read_bytes()).hexdigest()
    assert manifest["input"]["shape"] == [2, 40] and not (out / "profile.json").exists()
    assert (out / "packed.onnx").read_bytes() == (out / "source.onnx").read_bytes()
    assert manifest["source_model"]["path"] == str(out / "packed.onnx")
    assert leftovers(out) == []
