"""The ``mptc`` click group: turns library errors into one-line messages and exit codes.

Each command's module is imported only when that command runs or shows its help (click's lazy
subcommands), and the command modules import torch and tvm only inside their functions, so
``mptc --help`` and ``mptc --version`` start without loading a framework.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Any

import click

from mptc import __version__
from mptc.errors import MptcError


class MptcGroup(click.Group):
    """A click group whose commands never show a traceback for a user error.

    Args:
        lazy_subcommands: command name -> ``"module:attribute"`` of its click command, imported
            when the command is looked up.
    """

    def __init__(self, *args: Any, lazy_subcommands: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_subcommands = dict(lazy_subcommands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_subcommands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.lazy_subcommands:
            return super().get_command(ctx, cmd_name)
        module, _, attribute = self.lazy_subcommands[cmd_name].partition(":")
        command = getattr(importlib.import_module(module), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{self.lazy_subcommands[cmd_name]} is a {type(command).__name__}, not a click command")
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MptcError as error:
            click.echo(f"mptc: error: {error}", err=True)
            sys.exit(error.exit_code)
        except OSError as error:
            # Disk full, permission denied, unwritable paths: a user's environment, not a bug.
            click.echo(f"mptc: error: {error.strerror or error}: {error.filename or ''}".rstrip(": "), err=True)
            sys.exit(7)


@click.group(
    cls=MptcGroup,
    lazy_subcommands={
        "train": "mptc.cli.train:train",
        "eval": "mptc.cli.train:evaluate",
        "export": "mptc.cli.export:export",
        "optimize": "mptc.cli.optimize:optimize_command",
        "inspect": "mptc.cli.optimize:inspect_command",
        "compile": "mptc.cli.compile:compile_command",
        "profile": "mptc.cli.profile:profile_command",
        "serve-device": "mptc.cli.profile:serve_device_command",
        "sweep": "mptc.cli.sweep:sweep_command",
        "approximate": "mptc.cli.approximate:approximate_command",
    },
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="mptc")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """mptc: a deployment compiler for pruned binary neural networks.

    Strong lottery tickets (edge-popup, MPT-1/32, MPT-1/1, lottery jackpots) are learned as masks
    over frozen weights, exported to ONNX, packed into bit-level operators and compiled with TVM.

    \b
    Typical use:
      mptc train --model mlp --method biprop --sparsity 0.5 -o runs/mlp
      mptc eval runs/mlp
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
