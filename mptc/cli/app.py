"""The ``mptc`` click group: turns library errors into one-line messages and exit codes."""

from __future__ import annotations

import logging
import sys

import click

from mptc import __version__
from mptc.errors import MptcError


class MptcGroup(click.Group):
    """A click group whose commands never show a traceback for a user error."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except MptcError as error:
            click.echo(f"mptc: error: {error}", err=True)
            sys.exit(error.exit_code)
        except OSError as error:
            # Disk full, permission denied, unwritable paths: a user's environment, not a bug.
            click.echo(f"mptc: error: {error.strerror or error}: {error.filename or ''}".rstrip(": "), err=True)
            sys.exit(7)


@click.group(cls=MptcGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="mptc")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """mptc: a deployment compiler for pruned binary neural networks.

    Strong lottery tickets (edge-popup, MPT-1/32, MPT-1/1, lottery jackpots) are learned as masks
    over frozen weights, exported to ONNX, packed into bit-level operators and compiled with TVM.

    \b
    A typical session:
      mptc train --model mlp --method biprop --sparsity 0.5 --out runs/mlp
      mptc eval runs/mlp
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
