"""Set TVM's CPU thread pool as a module's manifest records (:class:`mptc.artifact.ThreadPool`).

TVM 0.27's runtime reads its pool settings from the environment, once per process: the spin count
(``TVM_THREAD_POOL_SPIN_COUNT``) when the first worker starts, the binding (``TVM_BIND_THREADS``)
and the thread count (``TVM_NUM_THREADS``) when a thread first runs a parallel kernel. It has no
call that changes the spin count later (``runtime.config_threadpool`` sets only the count and the
cores). So the settings go into this process's environment before anything runs, where every
process mptc starts inherits them too (the trial load, an emulated board); a variable the user has
set already is kept. A board's own RPC server reads its own environment (docs/deploy.md).
"""

from __future__ import annotations

import os

from mptc.artifact import ThreadPool

VARIABLES = ("TVM_NUM_THREADS", "TVM_THREAD_POOL_SPIN_COUNT", "TVM_BIND_THREADS")


def apply(pool: ThreadPool) -> dict[str, str]:
    """Put ``pool``'s settings into this process's environment, unless already set there; returns
    the values now in it (the user's where they set one, else ``pool``'s). A pool this process
    started earlier keeps what it read then."""
    for name, value in pool.environment().items():
        os.environ.setdefault(name, value)
    return {name: os.environ[name] for name in VARIABLES if name in os.environ}


def threads() -> int:
    """Threads of TVM's pool in this process: ``TVM_NUM_THREADS`` once ``apply`` has set it, else TVM's default."""
    import tvm

    return int(tvm.get_global_func("runtime.NumThreads")())


def describe(effective: dict[str, str]) -> str:
    """The settings in a few words: ``TVM's pool of 2 thread(s), spin count 1000, not bound to cores``
    (TVM's defaults where a variable is unset)."""
    bound = effective.get("TVM_BIND_THREADS", "1") == "1"  # TVM binds unless the variable says otherwise
    threads = effective.get("TVM_NUM_THREADS", "its default number of")
    return (
        f"TVM's pool of {threads} thread(s), spin count {effective.get('TVM_THREAD_POOL_SPIN_COUNT', '300000')}, "
        f"{'each bound to a core' if bound else 'not bound to cores'}"
    )
