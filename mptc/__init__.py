"""mptc: train, export, pack and compile strong lottery tickets (pruned binary networks)."""

import os
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# TVM sizes its thread pool from TVM_NUM_THREADS when its runtime loads, and otherwise from a core
# count that some VMs and containers under-report (1 on this machine kind, which has 2); peers
# such as onnxruntime use every core, so compiled modules do too unless the user says otherwise.
os.environ.setdefault(
    "TVM_NUM_THREADS", str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
)

# The Python API (mptc/api.py), re-exported lazily (PEP 562): `import mptc` and `mptc --help`
# load neither torch nor TVM; the first use of a name below imports what it needs.
_API = {
    "prune": "mptc.api",
    "train": "mptc.train",  # the package, which calls mptc.api.train (see mptc.api.CallablePackage)
    "load_ticket": "mptc.api",
    "export": "mptc.export",  # likewise
    "optimize": "mptc.api",
    "compile": "mptc.api",
    "profile": "mptc.api",
    "OptimizeResult": "mptc.api",
    "TrainConfig": "mptc.config",
}

__all__ = [
    "OptimizeResult",
    "TrainConfig",
    "__version__",
    "compile",
    "export",
    "load_ticket",
    "optimize",
    "profile",
    "prune",
    "train",
]

if TYPE_CHECKING:  # what type checkers see; at run time __getattr__ below imports them on first use
    from mptc.api import OptimizeResult, compile, export, load_ticket, optimize, profile, prune, train
    from mptc.config import TrainConfig


def __getattr__(name: str) -> object:
    if name in _API:
        import importlib

        module = importlib.import_module(_API[name])
        value = module if module.__name__ == f"{__name__}.{name}" else getattr(module, name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'mptc' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
