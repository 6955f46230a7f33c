"""Command-line interface: thin click commands over the library (one module per command).

The commands are registered by name in :mod:`mptc.cli.app` and imported on first use.
"""

from mptc.cli.app import main

__all__ = ["main"]
