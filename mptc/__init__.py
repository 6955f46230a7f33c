"""mptc: train, export, pack and compile strong lottery tickets (pruned binary networks)."""

import os

__version__ = "0.1.0"

# TVM sizes its thread pool from TVM_NUM_THREADS when its runtime loads, and otherwise from a core
# count that some VMs and containers under-report (1 on this machine kind, which has 2); peers
# such as onnxruntime use every core, so compiled modules do too unless the user says otherwise.
os.environ.setdefault(
    "TVM_NUM_THREADS", str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
)
