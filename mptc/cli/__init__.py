"""Command-line interface: thin click commands over the library (one module per command)."""

from mptc.cli.app import main

__all__ = ["main"]

from mptc.cli.train import evaluate, train  # noqa: E402

main.add_command(train)
main.add_command(evaluate)

from mptc.cli.export import export  # noqa: E402

main.add_command(export)
