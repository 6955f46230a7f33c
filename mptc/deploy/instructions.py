"""Guest instructions per inference of an aarch64 module, counted under qemu: a board-free speed figure.

Why: emulated latency is 40-60x a board's and noisy, but the number of instructions the guest
executes is exact and repeatable. A qemu TCG plugin (``scripts/qemu/insn_count.c``, built by
``scripts/setup_arm_emulator.sh`` into ``<arm root>/lib/libinsn_count.so``) counts every executed
guest instruction. One emulated process loads OUT/module.so, calls ``vm["main"]`` on the reference
input ``1 + warmup`` times (first-call set-up, and Python 3.11 specialising the loop), then counts
two regions, each opened and closed by a marker syscall (``close`` of a descriptor numbered
``MARK_START`` / ``MARK_STOP``): the same loop run ``runs`` and ``2 * runs`` times. At exit the
plugin writes each region's and the whole process's counts; subtracting cancels the markers' and
the loop's fixed cost::

    instructions per inference = (count(2 * runs calls) - count(runs calls)) / runs

Subtracting whole-process counts of a ``warmup`` and a ``warmup + runs`` process instead does not
repeat: the interpreter's start-up (about 11 G instructions) varies by millions from run to run,
more than a small model's inference. The region count repeats exactly.

TVM runs at one thread (``TVM_NUM_THREADS=1``): the plugin's class counters are not atomic, and
one thread is also the figure to compare with a single-threaded peer. A board has several cores: for
``threads`` above one, :func:`thread_instructions` counts only the instructions executed inside
``OUT/module.so``'s code (its executable mapping, marked by the guest before the first call), per
guest thread, each thread on its own counter: the kernels' work and how it splits, without the
thread pool's waiting, whose count depends on the host's timing. :func:`block_counts` splits the
module's code count by translated block (the plugin's ``blocks=1``), for reading a kernel's cost
off its assembly (``bench/bench_hot_blocks.py``). ``PYTHONHASHSEED`` is fixed and
the garbage collector is off inside the regions, so they take the same paths every time.
The counts are instructions, not cycles: they rank kernels on one core model, they do not give
its latency.

The same method counts the peer, ``engine="onnxruntime"``: onnxruntime's aarch64 wheel (set up in
``<arm root>/ortlib``) runs ``OUT/source.onnx`` in the same emulated core, at one intra-op and one
inter-op thread, sequential execution, every graph optimization, the CPU execution provider.
:func:`compare_instructions` counts both and their ratio: how many times more instructions the
peer executes per inference, a board-free figure for the speed-up on that core. Each engine's
output on the reference input must match ``OUT/reference.npz`` before its count is returned.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mptc.artifact import MANIFEST_FILE, MODULE_FILE, REFERENCE_FILE, SOURCE_MODEL_FILE, read_manifest, read_reference
from mptc.deploy.emulator import SETUP_COMMAND, arm_root, get_board, launcher
from mptc.errors import DeviceError, InputError
from mptc.verify import compare_outputs, rel_tolerance

PLUGIN_FILE = "lib/libinsn_count.so"
PEER_LIB = "ortlib"
"""The folder under the arm root holding onnxruntime's aarch64 wheel (``scripts/setup_arm_emulator.sh``)."""
PEER_MAX_IR_VERSION = 10  # the newest ONNX IR version onnxruntime 1.19 reads
DEFAULT_RUNS = 10
"""Inferences counted by default (the difference between the plugin's two regions)."""
TIMEOUT_S = 600.0
"""Seconds one emulated process may take (a large model at many runs is slow under qemu)."""

CLASSES = ("total", "neon_cnt", "loads_stores", "fp_simd")
"""The plugin's counters, in the order of its output lines (see ``scripts/qemu/insn_count.c``)."""
MARK_START, MARK_STOP = 0x6D707400, 0x6D707401
"""Descriptor numbers whose ``close`` opens / closes the plugin's counting region (as in insn_count.c)."""
MARK_CODE_START, MARK_CODE_END = 0x6D707402, 0x6D707403
"""Descriptor numbers whose ``lseek`` offset gives the plugin the module's code range (as in insn_count.c)."""
MAX_REGIONS = 4096
"""Regions the plugin reports (``MAX_REGIONS`` in insn_count.c); later ones are dropped."""


@dataclass(frozen=True)
class Engine:
    """What runs the model in the guest: ``setup`` is guest code that leaves ``call(arg)``, one
    inference, and ``first``, its output (numpy) on the reference input; ``model`` the OUT/ file it runs."""

    name: str
    model: str
    setup: str


ENGINES = {
    "mptc": Engine(
        "mptc",
        MODULE_FILE,
        """\
import tvm
import tvm.runtime.vm
dev = tvm.cpu()
vm = tvm.runtime.vm.VirtualMachine(tvm.runtime.load_module(model), dev)
mark_code(model)
threads = int(os.environ["TVM_NUM_THREADS"])
if threads > 1:  # as many workers as a board's cores, however many the emulating host has
    tvm.get_global_func("runtime.config_threadpool")(1, threads)
call, arg = vm["main"], tvm.runtime.tensor(x, dev)
first = call(arg).numpy()
""",
    ),
    "onnxruntime": Engine(
        "onnxruntime",
        SOURCE_MODEL_FILE,
        """\
sys.path.insert(0, lib)
import functools
import onnxruntime as ort
options = ort.SessionOptions()
options.intra_op_num_threads = 1
options.inter_op_num_threads = 1
options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
options.log_severity_level = 3
session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
call, arg = functools.partial(session.run, None), {session.get_inputs()[0].name: x}
first = call(arg)[0]
""",
    ),
}
"""The engines counted: the compiled module, and onnxruntime on the model it was compiled from."""

_GUEST_HEAD = """\
import sys
# tvm_ffi imports these if it can; never needed here (modules take and give float32), and under
# the emulator ml_dtypes' start-up alone takes half of TVM's import
sys.modules["torch"] = sys.modules["ml_dtypes"] = None
import gc
import os
import numpy as np
model, reference, result, lib = sys.argv[1:5]
with np.load(reference) as arrays:
    x = arrays["x"]


def mark(fd):
    try:
        os.close(fd)
    except OSError:
        pass


def mark_code(path):
    path = os.path.realpath(path)
    spans = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            if len(fields) >= 6 and fields[5] == path and "x" in fields[1]:
                spans += [int(end, 16) for end in fields[0].split("-")]
    for fd, at in (({code_start}, min(spans, default=0)), ({code_end}, max(spans, default=0))):
        try:
            os.lseek(fd, at, 0)
        except OSError:
            pass


{setup}
np.save(result, first)
"""
"""What every guest runs first: ``mark``, which opens or closes a counting region, ``mark_code``,
which gives the plugin the executable mapping of a loaded file, and the engine set up on the
reference input (its output saved to ``result``)."""

_GUEST = (
    _GUEST_HEAD
    + """\
warmup, runs = int(sys.argv[5]), int(sys.argv[6])


def loop(calls):
    for _ in range(calls):
        call(arg)


loop(warmup)  # also lets the interpreter specialise the loop before it is counted
gc.disable()
for calls in (runs, 2 * runs):
    mark({start})
    loop(calls)
    mark({stop})
"""
)

_KERNELS_GUEST = (
    _GUEST_HEAD
    + """\
call(arg)
calls = []


def instrument(func, symbol, before, ret, *args):
    if symbol.startswith("vm.builtin."):
        return 0
    if before:
        calls.append(symbol + " " + "x".join(str(int(d)) for d in args[-1].shape))
        mark({start})
    else:
        mark({stop})
    return 0


gc.disable()
mark({start})
mark({stop})
vm.set_instrument(instrument)
call(arg)
vm.set_instrument(None)
with open(result + ".calls", "w") as f:
    f.write("\\n".join(calls))
"""
)


@dataclass(frozen=True)
class InstructionCounts:
    """Guest instructions per inference, in total and by class (fractions of one inference's count).

    ``neon_cnt`` counts CNT (vector), the popcount of the binary kernels; ``loads_stores`` the A64
    loads and stores group; ``fp_simd`` scalar FP and Advanced SIMD data processing (CNT excluded).
    """

    total: float
    neon_cnt: float
    loads_stores: float
    fp_simd: float


@dataclass(frozen=True)
class KernelInstructions:
    """One kernel call of an inference: the compiled function, its output shape, and the guest
    instructions it executed, by class."""

    kernel: str
    output_shape: tuple[int, ...]
    counts: InstructionCounts


@dataclass(frozen=True)
class InstructionComparison:
    """The module's and the peer's counts on one emulated core; ``peer`` names the peer's version."""

    mptc: InstructionCounts
    onnxruntime: InstructionCounts
    peer: str

    @property
    def ratio(self) -> float:
        """Peer instructions per module instruction, per inference: above 1, the module executes fewer."""
        return self.onnxruntime.total / self.mptc.total


def plugin() -> Path:
    """The instruction-counting plugin; a clear error when the set-up has not built it."""
    path = arm_root() / PLUGIN_FILE
    if not path.is_file():
        raise DeviceError(f"the qemu instruction-counting plugin is missing ({path}): run `{SETUP_COMMAND}`")
    return path


def peer_lib() -> Path:
    """The folder holding onnxruntime for the guest; a clear error when the set-up has not made it."""
    path = arm_root() / PEER_LIB
    if not (path / "onnxruntime").is_dir():
        raise DeviceError(
            f"onnxruntime for aarch64 is missing ({path}): run `{SETUP_COMMAND}` to install the peer's wheel"
        )
    return path


def peer_version() -> str:
    """``onnxruntime 1.19.2``: the peer's version, read from the unpacked wheel's metadata."""
    found = next(iter(importlib.metadata.distributions(name="onnxruntime", path=[str(peer_lib())])), None)
    if found is None:
        raise DeviceError(f"{peer_lib()} has no onnxruntime metadata: run `{SETUP_COMMAND}` again")
    return f"onnxruntime {found.version}"


def _engine(name: str) -> Engine:
    try:
        return ENGINES[name]
    except KeyError as e:
        raise InputError(f"unknown engine '{name}' to count: expected one of {', '.join(ENGINES)}") from e


def _peer_model(source: Path, scratch: Path) -> Path:
    """``source`` as the guest's onnxruntime runs it: the fp32 network it encodes (``mptc.ops.unpack``:
    ``ai.mptc`` layers as Conv/Gemm on weights unpacked once, not bits unpacked per call), IR version lowered."""
    import onnx

    from mptc.ops.reference import DOMAIN
    from mptc.ops.unpack import unpack_model

    model = onnx.load(source)
    if not any(node.domain == DOMAIN for node in model.graph.node) and model.ir_version <= PEER_MAX_IR_VERSION:
        return source
    model = unpack_model(model)
    model.ir_version = min(model.ir_version, PEER_MAX_IR_VERSION)
    path = scratch / SOURCE_MODEL_FILE
    onnx.save(model, path)
    return path


def _check_output(engine: Engine, got: np.ndarray, expected: np.ndarray, where: str, tolerance: float) -> None:
    """Counts of a wrong computation mean nothing: the output must match the reference first, by
    the criterion every stage's check uses (``mptc.verify.compare_outputs``)."""
    check = compare_outputs(got, expected, tolerance)
    if not check["outputs_match"]:
        found = ", ".join(f"{key} {value}" for key, value in check.items() if key != "outputs_match")
        raise DeviceError(f"{engine.name} on {where} computed an output that differs from {REFERENCE_FILE} ({found})")


def _guest(script: str, engine: Engine) -> str:
    """``script`` with ``engine``'s set-up and the plugin's marker descriptors filled in."""
    marks = {"start": MARK_START, "stop": MARK_STOP, "code_start": MARK_CODE_START, "code_end": MARK_CODE_END}
    return script.format(setup=engine.setup, **marks)


def count_instructions(
    out_dir: str | Path,
    board: str,
    *,
    runs: int,
    warmup: int,
    engine: str = "mptc",
    threads: int = 1,
    tolerance: float | None = None,
) -> dict[str, list[tuple[int, ...]]]:
    """Guest instructions of one emulated process that runs ``engine`` ``warmup + runs`` times,
    at ``threads`` TVM threads.

    Returns the plugin's counters, each a tuple in :data:`CLASSES` order: under ``"region"`` one
    per counted region (``runs`` calls, then ``2 * runs``), under ``"total"`` one for the whole
    process; for ``mptc``, under ``"code"`` one per region with the instructions each guest thread
    executed in the module's code (exact at any thread count, where the others are at one only).
    """
    chosen = _engine(engine)
    script = _guest(_GUEST, chosen)
    found, _ = _run_guest(
        out_dir, board, chosen, script, [str(warmup), str(runs)], threads=threads, tolerance=tolerance
    )
    if len(found["region"]) != 2:
        raise DeviceError(
            f"the instruction-counting plugin saw {len(found['region'])} marked regions, expected 2: "
            f"is {plugin()} built from scripts/qemu/insn_count.c?"
        )
    return found


def kernel_instructions(out_dir: str | Path, board: str) -> list[KernelInstructions]:
    """Guest instructions of each kernel call of one inference of ``OUT/module.so`` on emulated
    ``board``, in call order (after a warm-up call).

    Each call runs between two markers from the Relax VM's instrument, so a row also holds the
    VM's own dispatch of that call (a few thousand instructions); the markers' cost, counted in
    an empty region first, is subtracted. At most ``MAX_REGIONS - 1`` calls are counted."""
    script = _guest(_KERNELS_GUEST, ENGINES["mptc"])
    found, calls = _run_guest(out_dir, board, ENGINES["mptc"], script, [], names=True)
    empty, *regions = found["region"]
    if len(regions) != len(calls) or len(calls) >= MAX_REGIONS:
        raise DeviceError(
            f"the instruction-counting plugin saw {len(regions)} kernel regions for {len(calls)} kernel calls "
            f"(it keeps {MAX_REGIONS - 1}): is {plugin()} built from scripts/qemu/insn_count.c?"
        )
    rows = []
    for counts, call in zip(regions, calls, strict=True):
        kernel, shape = call.rsplit(" ", 1)
        net = (max(0, c - e) for c, e in zip(counts, empty, strict=True))
        rows.append(KernelInstructions(kernel, tuple(int(d) for d in shape.split("x") if d), InstructionCounts(*net)))
    return rows


def _run_guest(
    out_dir: str | Path,
    board: str,
    engine: Engine,
    script: str,
    args: list[str],
    names: bool = False,
    threads: int = 1,
    tolerance: float | None = None,
    blocks: bool = False,
) -> tuple[dict[str, list[tuple[int, ...]]], list[str]]:
    """Run ``script`` in one emulated process on ``engine``'s model with the counting plugin (TVM at
    ``threads`` threads), check its output against the reference, and return the plugin's counters
    (``region``, ``total`` and ``code`` lines; with ``blocks``, ``block`` lines too) and, with
    ``names``, the lines the guest wrote to ``<result>.calls`` (``_KERNELS_GUEST``)."""
    out = Path(out_dir)
    for name in (engine.model, REFERENCE_FILE):
        if not (out / name).is_file():
            raise InputError(f"{out} has no {name}: expected an OUT/ folder written by `mptc compile --target arm`")
    qemu_cpu = get_board(board).qemu_cpu
    python, lib = launcher(), plugin()
    guest_lib = str(peer_lib()) if engine.name == "onnxruntime" else ""
    where = f"emulated {board} ({qemu_cpu})"
    with tempfile.TemporaryDirectory(prefix="mptc-insn-") as tmp:
        scratch = Path(tmp)
        model = _peer_model(out / engine.model, scratch) if engine.name == "onnxruntime" else out / engine.model
        counts, result = scratch / "counts", scratch / "output.npy"
        called = result.with_name(result.name + ".calls")  # the kernels guest's list of calls
        env = {
            **os.environ,
            "QEMU_CPU": qemu_cpu,
            # qemu-user reads QEMU_PLUGIN as its -plugin option; the launcher passes it through.
            "QEMU_PLUGIN": f"{lib},outfile={counts}" + (",blocks=1" if blocks else ""),
            "TVM_NUM_THREADS": str(threads),
            "PYTHONHASHSEED": "0",
        }
        command = [str(python), "-c", script, str(model), str(out / REFERENCE_FILE), str(result), guest_lib, *args]
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired as e:
            raise DeviceError(
                f"counting {engine.name} instructions of {out} on {where} took over {TIMEOUT_S:.0f} s"
            ) from e
        if done.returncode != 0 or not counts.is_file() or not result.is_file() or (names and not called.is_file()):
            tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise DeviceError(
                f"{where} failed to run {engine.name} on {out / engine.model} (exit {done.returncode}): {tail}"
            )
        if tolerance is None:
            activations = read_manifest(out).activations.dtype if (out / MANIFEST_FILE).is_file() else "fp32"
            tolerance = rel_tolerance(activations)
        _check_output(engine, np.load(result), read_reference(out)[1], where, tolerance)
        text = counts.read_text()
        calls = [line for line in called.read_text().splitlines() if line] if names else []
    found: dict[str, list[tuple[int, ...]]] = {"region": [], "total": [], "code": [], "block": []}
    widths = {"region": len(CLASSES), "total": len(CLASSES), "block": 3}
    for line in text.splitlines():
        name, *fields = line.split()
        if name not in found or len(fields) != widths.get(name, len(fields)) or not fields:
            raise DeviceError(
                f"the instruction-counting plugin wrote {line!r}: expected 'region|total' and {len(CLASSES)} "
                "numbers, 'code' and a number per thread, or 'block' and 3 numbers"
            )
        found[name].append(tuple(int(field) for field in fields))
    if len(found["total"]) != 1:
        raise DeviceError(f"the instruction-counting plugin wrote {len(found['total'])} total lines, expected 1")
    return found, calls


def instruction_counts(
    out_dir: str | Path,
    board: str,
    *,
    runs: int = DEFAULT_RUNS,
    warmup: int = 1,
    engine: str = "mptc",
    tolerance: float | None = None,
) -> InstructionCounts:
    """Guest instructions per inference of ``engine`` on emulated ``board``, by class.

    Args:
        out_dir: an OUT/ folder of an aarch64 build (module.so, reference.npz; source.onnx for the peer).
        board: the board whose core qemu emulates (``rpi4``, ``rpi5``, ``jetson-orin``).
        runs: the inferences counted (the difference between the plugin's two regions).
        warmup: calls made first, outside the regions, so one-time set-up is not counted; at least 1.
        engine: ``mptc`` (OUT/module.so) or ``onnxruntime`` (OUT/source.onnx, the peer).
        tolerance: the output's relative tolerance against the reference (default: the manifest's
            activations', ``mptc.verify.rel_tolerance``).
    """
    if runs < 1 or warmup < 1:
        raise InputError(f"runs and warmup must be at least 1: got runs={runs}, warmup={warmup}")
    counted = count_instructions(out_dir, board, runs=runs, warmup=warmup, engine=engine, tolerance=tolerance)
    once, twice = counted["region"]
    return InstructionCounts(*((b - a) / runs for a, b in zip(once, twice, strict=True)))


@dataclass(frozen=True)
class BlockCount:
    """One block of ``OUT/module.so``'s code as qemu translated it: its ``offset`` from the start of
    the module's executable mapping, its ``instructions``, and its ``executions`` per inference."""

    offset: int
    instructions: int
    executions: float

    @property
    def per_inference(self) -> float:
        """The block's share of an inference's instructions."""
        return self.instructions * self.executions


def block_counts(out_dir: str | Path, board: str, *, runs: int = DEFAULT_RUNS, warmup: int = 1) -> list[BlockCount]:
    """The blocks of ``OUT/module.so``'s code one inference runs on emulated ``board`` (TVM at one
    thread), most instructions first: where a kernel's instructions go, to the instruction. Their
    instructions add up to the module's code count exactly, or this raises (the plugin keeps
    ``MAX_BLOCKS`` blocks)."""
    if runs < 1 or warmup < 1:
        raise InputError(f"runs and warmup must be at least 1: got runs={runs}, warmup={warmup}")
    script = _guest(_GUEST, ENGINES["mptc"])
    found, _ = _run_guest(out_dir, board, ENGINES["mptc"], script, [str(warmup), str(runs)], blocks=True)
    executions: Counter[tuple[int, int]] = Counter()
    for offset, instructions, times in found["block"]:  # a block qemu translated twice: two lines
        executions[offset, instructions] += times
    counted = sum(n * times for (_, n), times in executions.items())
    code = sum(sum(counts) for counts in found["code"])
    if counted != code:
        raise DeviceError(
            f"the blocks the plugin listed hold {counted} of the module's {code} instructions: "
            f"is {plugin()} built from scripts/qemu/insn_count.c?"
        )
    inferences = 3 * runs  # the two regions: runs calls, then 2 * runs
    rows = [BlockCount(offset, n, times / inferences) for (offset, n), times in executions.items()]
    return sorted(rows, key=lambda row: -row.per_inference)


@dataclass(frozen=True)
class ThreadInstructions:
    """Instructions per inference executed inside ``OUT/module.so``'s code at ``threads`` TVM
    threads, per guest thread that ran any (busiest first): the kernels' work and its split."""

    threads: int
    per_thread: tuple[float, ...]

    @property
    def work(self) -> float:
        """All threads' module instructions per inference: above the one-thread count by what
        splitting the work adds (a task's set-up, a weight block decoded per task)."""
        return sum(self.per_thread)

    @property
    def busiest(self) -> float:
        """The busiest thread's module instructions per inference: the critical path, in instructions."""
        return self.per_thread[0]

    @property
    def balance(self) -> float:
        """``work / (threads * busiest)``: 1 when every thread gets the same share."""
        return self.work / (self.threads * self.busiest)


def thread_instructions(
    out_dir: str | Path, board: str, *, threads: int, runs: int = DEFAULT_RUNS, warmup: int = 1
) -> ThreadInstructions:
    """Instructions per inference inside ``OUT/module.so``'s code, per guest thread, with TVM at
    ``threads`` threads on emulated ``board`` (see the module doc); the output is checked first."""
    if threads < 1 or runs < 1 or warmup < 1:
        raise InputError(f"threads, runs and warmup must be at least 1: got {threads}, {runs}, {warmup}")
    found = count_instructions(out_dir, board, runs=runs, warmup=warmup, threads=threads)["code"]
    if len(found) != 2:
        raise DeviceError(
            f"the instruction-counting plugin saw the module's code in {len(found)} regions, expected 2: "
            f"is {plugin()} built from scripts/qemu/insn_count.c?"
        )
    width = max(len(counts) for counts in found)  # threads past the last to run module code are not listed
    once, twice = (counts + (0,) * (width - len(counts)) for counts in found)
    per_thread = sorted(((b - a) / runs for a, b in zip(once, twice, strict=True)), reverse=True)
    return ThreadInstructions(threads, tuple(n for n in per_thread if n > 0))


@dataclass(frozen=True)
class CoreSplit:
    """The module's code instructions per inference at one thread, and their split at ``split.threads``."""

    one_thread: float
    split: ThreadInstructions

    @property
    def critical_path_gain(self) -> float:
        """One thread's count over the busiest thread's: the most the threads can shorten an inference."""
        return self.one_thread / self.split.busiest


def core_split(
    out_dir: str | Path, board: str, *, threads: int, runs: int = DEFAULT_RUNS, warmup: int = 1
) -> CoreSplit:
    """The module's code counted at 1 thread and at ``threads`` threads (:func:`thread_instructions`)."""
    one = thread_instructions(out_dir, board, threads=1, runs=runs, warmup=warmup)
    return CoreSplit(one.work, thread_instructions(out_dir, board, threads=threads, runs=runs, warmup=warmup))


def instructions_per_inference(out_dir: str | Path, board: str, *, runs: int = DEFAULT_RUNS, warmup: int = 1) -> float:
    """Guest instructions per inference of ``OUT/module.so`` on emulated ``board`` (see the module doc)."""
    return instruction_counts(out_dir, board, runs=runs, warmup=warmup).total


def compare_instructions(
    out_dir: str | Path, board: str, *, runs: int = DEFAULT_RUNS, warmup: int = 1
) -> InstructionComparison:
    """The module's and onnxruntime's instructions per inference on emulated ``board``, and their ratio.

    The peer is checked before anything runs: a missing ``ortlib`` fails at once, not after the module's count.
    """
    version = peer_version()
    mptc = instruction_counts(out_dir, board, runs=runs, warmup=warmup)
    peer = instruction_counts(out_dir, board, runs=runs, warmup=warmup, engine="onnxruntime")
    return InstructionComparison(mptc, peer, version)
