"""Damaged ONNX files through ``mptc inspect``, ``optimize`` and ``compile``, and the library reader.

Real exported and packed models are truncated, bit-flipped or replaced by random bytes. A damaged
file may still be a readable model (a flipped bit in a weight): then the command may succeed,
and what it writes must be a valid model. Otherwise it is refused cleanly (``assert_refused``).
"""

from __future__ import annotations

import onnx
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mptc.errors import InputError
from mptc.passes.pipeline import load_model
from tests.robustness.harness import FUZZ, assert_refused, damage_bytes, invoke, record

SOURCES = ("model.onnx", "packed.onnx", "conv-packed.onnx")


@st.composite
def damage(draw) -> tuple[str, str, tuple[int, ...]]:
    """How to damage which real model: ``(source, "truncate" | "flip" | "random", numbers)``.

    Numbers, not bytes, so that Hypothesis shows a short example when one fails.
    """
    numbers = st.integers(0, 2**31)
    how = draw(st.sampled_from(("truncate", "flip", "random")))
    count = {"truncate": 1, "flip": draw(st.integers(1, 16)), "random": 2}[how]
    return draw(st.sampled_from(SOURCES)), how, tuple(draw(numbers) for _ in range(count))


def damaged(sources: dict[str, bytes], spec: tuple[str, str, tuple[int, ...]]) -> bytes:
    """The bytes of ``spec`` (see :func:`damage`): a truncation, 1-16 flipped bits or random bytes."""
    name, how, numbers = spec
    return damage_bytes(sources[name], how, numbers)


def run_on(command: str, data: bytes, folder) -> None:
    path, out = folder / "in.onnx", folder / "out.onnx"
    path.write_bytes(data)
    out.unlink(missing_ok=True)
    record(command, data)
    result = invoke([command, path, "-o", out] if command == "optimize" else [command, path])
    if result.exit_code == 0:  # the damage left a readable model (a flipped weight bit)
        if command == "optimize":
            onnx.checker.check_model(onnx.load(out))
        return
    assert_refused(result, *([out] if command == "optimize" else []))


@pytest.mark.parametrize("command", ["inspect", "optimize"])
def test_damaged_models(command, artifacts, tmp_path):
    sources = artifacts.onnx_sources()

    @settings(FUZZ, max_examples=300)
    @given(spec=damage())
    def check(spec) -> None:
        run_on(command, damaged(sources, spec), tmp_path)

    check()


def test_damaged_models_to_compile(artifacts, tmp_path):
    """Only files the reader refuses: a readable model would be compiled (seconds each)."""
    sources = artifacts.onnx_sources()
    out = tmp_path / "module"

    @settings(FUZZ, max_examples=40)
    @given(spec=damage())
    def check(spec) -> None:
        data = damaged(sources, spec)
        path = tmp_path / "in.onnx"
        path.write_bytes(data)
        try:
            load_model(path)
        except InputError:
            pass
        else:
            assume(False)
        record("compile", data)
        assert_refused(invoke(["compile", path, "--target", "x86", "-o", out]), out)

    check()


@settings(FUZZ, max_examples=200)
@given(data=st.binary(max_size=2048))
def test_library_reader_raises_only_input_error(data, tmp_path_factory):
    path = tmp_path_factory.mktemp("reader") / "x.onnx"
    path.write_bytes(data)
    record("load_model", data)
    try:
        model = load_model(path)
    except InputError:
        return
    assert model.graph.node  # the reader only returns a model with a graph


@pytest.mark.parametrize("what", ["missing", "folder", "empty"])
@pytest.mark.parametrize("command", ["inspect", "optimize", "compile"])
def test_not_a_file(command, what, tmp_path):
    path = {"missing": tmp_path / "none.onnx", "folder": tmp_path, "empty": tmp_path / "empty.onnx"}[what]
    if what == "empty":
        path.write_bytes(b"")
    out = tmp_path / "out"
    record(command, what)
    extra = {"inspect": [], "optimize": ["-o", out], "compile": ["--target", "x86", "-o", out]}[command]
    assert_refused(invoke([command, path, *extra]), out)
