"""The board catalogue: light to import, and the one list every CLI choice offers."""

import subprocess
import sys

import click
import pytest

from mptc.boards import BOARDS, TARGETS
from mptc.cli import main


def test_catalogue_imports_neither_tvm_nor_torch() -> None:
    code = "import sys, mptc.boards, mptc.hostinfo; print(sorted({'tvm', 'torch'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


@pytest.mark.parametrize(
    ("command", "option", "choices"),
    [
        ("compile", "target", TARGETS),
        ("compile", "board", list(BOARDS)),
        ("sweep", "target", TARGETS),
        ("sweep", "board", list(BOARDS)),
        ("sweep", "emulate", list(BOARDS)),
        ("profile", "emulate", list(BOARDS)),
        ("serve-device", "emulate", list(BOARDS)),
    ],
)
def test_cli_choices_are_the_catalogue_in_its_order(command: str, option: str, choices: list[str]) -> None:
    cli_command = main.get_command(click.Context(main), command)
    assert cli_command is not None
    param = next(p for p in cli_command.params if p.name == option)
    assert isinstance(param.type, click.Choice) and list(param.type.choices) == list(choices)


def test_only_the_jetson_has_a_gpu() -> None:
    assert {name: board.gpu_arch for name, board in BOARDS.items()} == {
        "rpi4": None,
        "rpi5": None,
        "jetson-orin": "sm_87",
    }
