"""The options several commands share: one spelling (``-o/--out``), old spellings kept with a warning."""

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from mptc.cli import main

# The arguments each writing command needs besides its output.
WRITERS = {
    "train": [],
    "approximate": ["runs/dense"],
    "export": ["runs/mlp"],
    "optimize": ["model.onnx"],
    "compile": ["packed.onnx", "--target", "x86"],
    "sweep": [],
}


def command(name: str) -> click.Command:
    found = main.get_command(click.Context(main), name)
    assert found is not None
    return found


def parse(name: str, args: list[str]) -> click.Context:
    """The command's context after parsing ``args``, without running it."""
    return command(name).make_context(name, args, parent=click.Context(main, info_name="mptc"))


@pytest.mark.parametrize("name", WRITERS)
@pytest.mark.parametrize("flag", ["-o", "--out"])
def test_every_writing_command_takes_o_and_out(name: str, flag: str) -> None:
    assert parse(name, [*WRITERS[name], flag, "result"]).params["out"] == Path("result")


@pytest.mark.parametrize("name", WRITERS)
def test_the_output_is_required(name: str) -> None:
    with pytest.raises(click.MissingParameter) as missing:
        parse(name, WRITERS[name])
    assert missing.value.format_message() == "Missing option '-o' / '--out'."


def test_the_old_output_spelling_still_works_with_a_warning(tmp_path) -> None:
    result = CliRunner().invoke(main, ["export", str(tmp_path / "none"), "--output", str(tmp_path / "m.onnx")])
    assert "mptc: warning: --output is deprecated, use -o/--out" in result.output
    assert result.exit_code == 3 and "no ticket" in result.output  # it reached the export with that path
    assert "--output" not in CliRunner().invoke(main, ["export", "--help"]).output


@pytest.mark.parametrize(
    ("name", "flag", "metavar"),
    [(c, f, "HOST:PORT") for c in ("sweep", "profile") for f in ("rpc", "tracker")]
    + [(c, "key", "KEY") for c in ("sweep", "profile", "serve-device")],
)
def test_shared_options_have_one_metavar(name: str, flag: str, metavar: str) -> None:
    assert next(p for p in command(name).params if p.name == flag).metavar == metavar


def test_compile_requires_a_target() -> None:
    """No silent default: an x86 module built on a laptop must not be shipped to a board by accident."""
    with pytest.raises(click.MissingParameter) as missing:
        parse("compile", ["packed.onnx", "-o", "out"])
    assert "--target" in missing.value.format_message()
    assert parse("sweep", ["-o", "out"]).params["target"] == "x86"
