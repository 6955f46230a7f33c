"""mptc: train, export, pack and compile strong lottery tickets (pruned binary networks)."""

__version__ = "0.1.0"
