"""Command-line interface: thin click commands over the library (one module per command)."""

from mptc.cli.app import main

__all__ = ["main"]

from mptc.cli.train import evaluate, train  # noqa: E402

main.add_command(train)
main.add_command(evaluate)

from mptc.cli.optimize import inspect_command, optimize_command  # noqa: E402

main.add_command(optimize_command)
main.add_command(inspect_command)

from mptc.cli.profile import profile_command, serve_device_command  # noqa: E402

main.add_command(profile_command)
main.add_command(serve_device_command)

from mptc.cli.export import export  # noqa: E402

main.add_command(export)

from mptc.cli.compile import compile_command  # noqa: E402

main.add_command(compile_command)

from mptc.cli.sweep import sweep_command  # noqa: E402

main.add_command(sweep_command)

from mptc.cli.approximate import approximate_command  # noqa: E402

main.add_command(approximate_command)
