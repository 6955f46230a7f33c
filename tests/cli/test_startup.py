"""``mptc --help``, ``--version`` and every command's ``--help`` start without torch, tvm or onnxruntime.

Each runs in a fresh interpreter, which then names the frameworks it loaded.
"""

import subprocess
import sys

import click
import pytest

from mptc.cli import main

FRAMEWORKS = ("torch", "tvm", "onnxruntime")
RUN = f"""
import sys
from mptc.cli import main
main(sys.argv[1:], prog_name="mptc", standalone_mode=False)
print("loaded:", *sorted(set({FRAMEWORKS!r}) & set(sys.modules)), file=sys.stderr)
"""


def loaded_frameworks(*args: str) -> list[str]:
    result = subprocess.run([sys.executable, "-c", RUN, *args], capture_output=True, text=True, check=True)
    assert result.stdout, f"mptc {' '.join(args)} printed nothing"
    return result.stderr.splitlines()[-1].split()[1:]


@pytest.mark.parametrize("args", [["--help"], ["--version"]], ids=" ".join)
def test_help_and_version_load_no_framework(args: list[str]) -> None:
    assert loaded_frameworks(*args) == []


@pytest.mark.parametrize("command", main.list_commands(click.Context(main)))
def test_command_help_loads_no_framework(command: str) -> None:
    assert loaded_frameworks(command, "--help") == []
