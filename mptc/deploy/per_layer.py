"""Per-layer times of a compiled module beside onnxruntime's own profiler, on the model compiled.

Why: a module slower than onnxruntime overall may lose in one layer only; the table says which.

The module side: TVM 0.27's Relax VM has no profiler (``tvm.runtime.profiling`` and the VM's
``profile`` are gone), but it calls an instrument before and after every ``Call`` instruction
(``VirtualMachine.set_instrument``). Before each call of a compiled kernel (a PrimFunc of the
library, not a ``vm.builtin``), the instrument times that kernel on the very arguments it is about
to get, with TVM's native time evaluator (``min_repeat_ms`` of runs, their mean): no Python call
sits inside the timed region. Each kernel call's row is the median over ``rounds`` runs.

The onnxruntime side: fp32 on the model ``--compare onnxruntime`` runs, with onnxruntime's profiler
on (``SessionOptions.enable_profiling``), at the module's thread count and sequential execution; each
node's row is the median of its ``kernel_time`` events over ``rounds x repeat`` runs after a warm-up.
Its ``ai.mptc`` nodes run as the fp32 network they encode (``mptc.ops.unpack``: the weight unpacked
once, as ``--compare onnxruntime`` runs it), each node named after the layer it came from.

Matching: the compiler names a layer's kernel ``mptc_<i>_<node name>`` (non-alphanumerics as
``_``, TVM may append digits to keep symbols unique), which names the source node (where several
names fit, the manifest's record of layer ``i`` decides); an onnxruntime
node is a layer's when it has the layer's name or computes a part of it (``<layer>|sign``). A layer
with rows on both sides is matched. Everything else is reported unmatched and grouped: the
module's glue (``fused_conv2d_add_relu``...: TVM's fused functions do not say which nodes they
came from) by kernel name, named with its output shape in front so a reader can place it in the
network, onnxruntime's by op type. Nothing is matched by position or by guess. So a Winograd
conv's row (``targets.kernels.winograd``) holds its two transforms only: its GEMMs are a TVM
matmul, one function for the convs of a shape, listed unmatched (``16xKxtiles matmul``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import re
import statistics
import tempfile
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from mptc.artifact import SOURCE_MODEL_FILE
from mptc.conventions import for_onnxruntime
from mptc.deploy import thread_pool
from mptc.deploy.artifact import CompiledModel, load_library
from mptc.errors import DeviceError, UnsupportedError, first_line
from mptc.ops.unpack import PART_SEPARATOR, unpack_model
from mptc.report.latency import WARMUP, time_call

MIN_REPEAT_MS = 1  # each kernel is run for at least this long per round, so a 1 us kernel is timed over many runs
CALLS_PER_ROUND = 5  # uninstrumented whole calls per round, after time_call's warm-up
_KERNEL = re.compile(r"mptc_(\d+)_(.+)")
_NCHWC = "_nchwc"
_FUSED_INTO_CONV = frozenset({"Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "Tanh", "Add", "Sum"})


@dataclass(frozen=True)
class Owners:
    """Which layer (source node name) each node name, and each tensor, of the model profiled belongs to."""

    nodes: dict[str, str]
    outputs: dict[str, str]

    def of(self, node: str) -> str | None:
        """The layer of an onnxruntime node: the one whose part it computes, the source node of
        the same name, or the owner of the output a rewritten node is named after; None otherwise
        (a node onnxruntime made or renamed, e.g. when fusing)."""
        if node in self.nodes:
            return self.nodes[node]
        layer, separator, _ = node.rpartition(PART_SEPARATOR)
        if separator:
            return self.nodes.get(layer)
        if node.endswith(_NCHWC):  # onnxruntime's NCHWc layout pass names a node it rewrites after its output
            return self.outputs.get(node[: -len(_NCHWC)])
        return None


@dataclass(frozen=True)
class Timed:
    """One call (module kernel) or node (onnxruntime) and its median in microseconds; ``layer``
    the source node it was matched to, None if none; ``shape`` a kernel's output shape (the
    buffer it writes last), which locates a glue kernel in the network."""

    name: str
    op: str
    us: float
    layer: str | None
    shape: tuple[int, ...] = ()


def per_layer(compiled: CompiledModel, source: bytes, *, rounds: int, repeat: int) -> dict[str, Any]:
    """The ``per_layer`` section of a profile: the module's kernels and onnxruntime's nodes, matched
    per layer, on the reference input; this host only.

    Raises:
        UnsupportedError: a module for another device than this CPU, or a model onnxruntime cannot run.
        DeviceError: a timer gave something that is not a duration.
    """
    if compiled.device_kind != "cpu":
        raise UnsupportedError(f"--per-layer times CPU modules on this host; {compiled.module_path} is a GPU module")
    model = onnx.load_from_string(source)
    names = [node.name for node in model.graph.node if node.name]
    kernels, module_ms, threads = module_times(compiled, rounds, names)
    nodes, session_ms = onnxruntime_times(model, compiled.manifest.input.name, compiled.x, threads, rounds * repeat)
    rows = match(kernels, nodes)
    return {
        "method": (
            f"the module's kernels each timed by TVM's time evaluator (at least {MIN_REPEAT_MS:g} ms of runs) on "
            f"the arguments the VM passes it, median of {rounds} runs; onnxruntime's nodes by its profiler, median "
            f"of {rounds * repeat} runs after {WARMUP} warm-up runs; both at {threads} thread(s)"
        ),
        "input": "x of the reference",
        "threads": threads,
        "rows": rows,
        "totals": {
            "mptc_us": sum(k.us for k in kernels),
            "onnxruntime_us": sum(n.us for n in nodes),
            "mptc_call_ms": module_ms,
            "onnxruntime_run_ms": session_ms,
        },
        "matched": sum(row["matched"] for row in rows),
        "kernels": [_record(k) for k in kernels],
        "nodes": [_record(n) for n in nodes],
    }


def module_times(compiled: CompiledModel, rounds: int, layers: Sequence[str]) -> tuple[list[Timed], float, int]:
    """Median microseconds of every kernel call of one run, in call order; the median ms of a whole
    call (uninstrumented, as ``--compare`` times it); the thread count of TVM's pool."""
    import tvm

    lib = load_library(compiled.module_path)
    dev = tvm.cpu(0)
    vm = tvm.runtime.vm.VirtualMachine(lib, dev)
    x = tvm.runtime.tensor(compiled.x, dev)
    main = vm["main"]
    threads = thread_pool.threads()
    recorded = [str(record.get("name", "")) for record in compiled.manifest.layers]
    timers: dict[str, Any] = {}
    samples: list[list[tuple[str, float]]] = []
    shapes: dict[str, tuple[int, ...]] = {}

    def instrument(func: Any, symbol: str, before: bool, ret: Any, *args: Any) -> int:
        if before and not symbol.startswith("vm.builtin."):
            timer = timers.get(symbol)
            if timer is None:
                owner = _implementing(lib, symbol)
                if owner is None:
                    return 0  # a packed function of the runtime, not a kernel of this module
                timer = timers[symbol] = owner.time_evaluator(
                    symbol, dev, number=1, repeat=1, min_repeat_ms=MIN_REPEAT_MS
                )
            samples[-1].append((symbol, float(timer(*args).mean) * 1e6))
            shapes[symbol] = tuple(int(d) for d in getattr(args[-1], "shape", ()))
        return 0

    whole_ms: list[float] = []
    try:
        for _ in range(rounds):  # the whole call timed between the instrumented runs, in the same phase of the host
            whole_ms.append(time_call(lambda: main(x), CALLS_PER_ROUND)["median"])
            samples.append([])
            vm.set_instrument(instrument)
            main(x)
            vm.set_instrument(None)
    except (RuntimeError, ValueError, TypeError) as error:  # TVM's errors, and the instrument's, come back as these
        raise DeviceError(
            f"{compiled.module_path}: timing its kernels one by one failed: {first_line(error)}"
        ) from error
    finally:
        vm.set_instrument(None)
    calls = samples[0]
    if not calls or any([s for s, _ in run] != [s for s, _ in calls] for run in samples):
        raise DeviceError(f"{compiled.module_path}: the module called no kernel, or other kernels from run to run")
    kernels = []
    for i, (symbol, _) in enumerate(calls):
        us = statistics.median(run[i][1] for run in samples)
        if not (math.isfinite(us) and us >= 0):
            raise DeviceError(f"TVM's time evaluator gave {us} us for kernel {symbol}: not a measurement")
        layer = kernel_layer(symbol, layers, recorded)
        kernels.append(Timed(symbol, _glue_group(symbol), us, layer, shapes.get(symbol, ())))
    return kernels, statistics.median(whole_ms), threads


def kernel_layer(symbol: str, layers: Sequence[str], recorded: Sequence[str] = ()) -> str | None:
    """The source node ``mptc_<i>_<name>[digits]`` was compiled from: the one the compiler
    recorded as its layer ``i`` where that name fits (``recorded``: the manifest's layers in
    order; ``node_conv2d_1`` + ``1`` fits ``node_conv2d_11`` as well as ``node_conv2d_11`` does),
    else the one name that fits exactly or alone; None for glue (TVM's fused functions) and for a
    name that fits none, or several that nothing decides."""
    found = _KERNEL.fullmatch(symbol)
    if found is None:
        return None
    index, rest = int(found.group(1)), found.group(2)
    fits = [name for name in layers if _fits(rest, _symbol_name(name))]
    if index < len(recorded) and recorded[index] in fits:
        return recorded[index]
    exact = [name for name in fits if _symbol_name(name) == rest]
    chosen = exact if len(exact) == 1 else fits
    return chosen[0] if len(chosen) == 1 else None


def onnxruntime_times(
    model: onnx.ModelProto, input_name: str, x: np.ndarray, threads: int, runs: int
) -> tuple[list[Timed], float]:
    """Median microseconds of every node onnxruntime ran (its profiler's ``kernel_time`` events), in
    its order, after :data:`WARMUP` runs; and the median ms of a whole run without the profiler."""
    import onnxruntime as ort
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

    named, owners = named_for_profiling(model)
    feed = {input_name: x}
    with tempfile.TemporaryDirectory(prefix="mptc-per-layer-") as tmp:

        def session(profile: bool) -> Any:
            options = ort.SessionOptions()
            options.log_severity_level = 3  # its warnings would cross the CLI's one-line contract
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            options.enable_profiling = profile
            options.profile_file_prefix = str(Path(tmp) / "ort")
            try:
                return ort.InferenceSession(named.SerializeToString(), options, providers=["CPUExecutionProvider"])
            except (ort_errors.Fail, ort_errors.InvalidGraph, ort_errors.InvalidArgument) as error:
                raise UnsupportedError(f"onnxruntime cannot load {SOURCE_MODEL_FILE}: {first_line(error)}") from error

        plain = session(profile=False)
        run_ms = time_call(lambda: plain.run(None, feed), runs)["median"]
        profiled = session(profile=True)
        for _ in range(WARMUP + runs):
            profiled.run(None, feed)
        trace = json.loads(Path(profiled.end_profiling()).read_text())
    return _node_medians(trace, owners, runs), run_ms


def named_for_profiling(model: onnx.ModelProto) -> tuple[onnx.ModelProto, Owners]:
    """``model`` unpacked (``mptc.ops.unpack``: a layer's nodes are named ``<layer>`` and
    ``<layer>|<part>``, an unnamed node after its output), and the layer of each node and tensor."""
    unpacked = for_onnxruntime(unpack_model(model))
    for node in unpacked.graph.node:  # an unnamed node is the layer its output names, as packing names it
        node.name = node.name or node.output[0]
    owners = Owners({node.name: node.name for node in unpacked.graph.node if PART_SEPARATOR not in node.name}, {})
    for node in unpacked.graph.node:
        # onnxruntime fuses an activation or residual add into the conv before it and names the fused
        # node after the last output: that output is the conv's layer's
        fused = node.op_type in _FUSED_INTO_CONV and node.input and node.input[0] in owners.outputs
        layer = owners.outputs[node.input[0]] if fused else owners.of(node.name)
        owners.outputs.update({out: layer for out in node.output if layer is not None})
    return unpacked, owners


def match(kernels: Sequence[Timed], nodes: Sequence[Timed]) -> list[dict[str, Any]]:
    """One row per layer with rows on either side (``matched`` when on both), then the unmatched
    kernels grouped by name (:func:`_group_name`) and the unmatched nodes by op type; the slowest first."""
    layers: dict[str, dict[str, list[Timed]]] = defaultdict(lambda: {"mptc": [], "onnxruntime": []})
    for side, timed in (("mptc", kernels), ("onnxruntime", nodes)):
        for t in timed:
            if t.layer is not None:
                layers[t.layer][side].append(t)
    rows = [_row(name, sides["mptc"], sides["onnxruntime"], _layer_kind(sides)) for name, sides in layers.items()]
    for side, timed in (("mptc", kernels), ("onnxruntime", nodes)):
        groups: dict[str, list[Timed]] = defaultdict(list)
        for t in timed:
            if t.layer is None:
                groups[_group_name(t)].append(t)
        for group, members in groups.items():
            mine = members if side == "mptc" else []
            theirs = members if side == "onnxruntime" else []
            rows.append(_row(group, mine, theirs, f"unmatched {side} {'glue' if side == 'mptc' else 'op'}"))
    rows.sort(key=lambda row: -max(row["mptc_us"] or 0.0, row["onnxruntime_us"] or 0.0))
    return rows


_STATUS = {"layer": "matched", "layer, mptc only": "mptc only", "layer, onnxruntime only": "ort only"}


def format_table(section: dict[str, Any]) -> Iterator[str]:
    """The section as text lines: one per row (``matched``, one side only, or ``unmatched``: a group
    of kernels or of onnxruntime's nodes of one op type), then the totals."""
    yield (
        f"{'layer / group':<28} {'match':<10} {'mptc kernels':<26} {'onnxruntime nodes':<26} "
        f"{'mptc us':>9} {'ort us':>9} {'ort/mptc':>8}"
    )
    for row in section["rows"]:
        ratio = "-" if row["speedup"] is None else f"{row['speedup']:.2f}x"
        yield (
            f"{_cut(row['name'], 28):<28} {_STATUS.get(row['kind'], 'unmatched'):<10} "
            f"{_cut(row['mptc'], 26):<26} {_cut(row['onnxruntime'], 26):<26} "
            f"{_us(row['mptc_us']):>9} {_us(row['onnxruntime_us']):>9} {ratio:>8}"
        )
    totals = section["totals"]
    yield (
        f"{'total of the rows':<93} {totals['mptc_us']:>9.1f} {totals['onnxruntime_us']:>9.1f} "
        f"{_ratio(totals['onnxruntime_us'], totals['mptc_us']) or 0:>7.2f}x"
    )
    yield (
        f"{'one whole call, uninstrumented':<93} {totals['mptc_call_ms'] * 1e3:>9.1f} "
        f"{totals['onnxruntime_run_ms'] * 1e3:>9.1f}"
    )


def _record(t: Timed) -> dict[str, Any]:
    """``t`` as the report's JSON holds it (the shape a list)."""
    return {**dataclasses.asdict(t), "shape": list(t.shape)}


def _group_name(t: Timed) -> str:
    """An unmatched row's name: its op, led by the output shape where a kernel has one
    (``1x96x56x56 fused_conv2d4_add3_maximum2_minimum2``): TVM's fused glue names no layer, its
    shape tells where in the network it runs."""
    return f"{'x'.join(map(str, t.shape))} {t.op}" if t.shape else t.op


def _layer_kind(sides: dict[str, list[Timed]]) -> str:
    """``layer``, or which side alone has rows for it (a layer compiled into glue, or fused away)."""
    alone = [side for side, timed in sides.items() if timed]
    return "layer" if len(alone) == 2 else f"layer, {alone[0]} only"


def _us(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}" if value >= 0.1 else f"{value:.3g}"


def _row(name: str, mine: Sequence[Timed], theirs: Sequence[Timed], kind: str) -> dict[str, Any]:
    mptc_us = sum(t.us for t in mine) if mine else None
    ort_us = sum(t.us for t in theirs) if theirs else None
    return {
        "name": name,
        "kind": kind,
        "matched": bool(mine and theirs),
        "mptc": _summary([t.name for t in mine]),
        "onnxruntime": _summary([t.op for t in theirs]),
        "mptc_us": mptc_us,
        "onnxruntime_us": ort_us,
        "speedup": _ratio(ort_us, mptc_us),
    }


def _node_medians(trace: list[dict[str, Any]], owners: Owners, runs: int) -> list[Timed]:
    """Per node, the median of its last ``runs`` ``kernel_time`` events."""
    durations: dict[str, list[float]] = defaultdict(list)
    ops: dict[str, str] = {}
    for event in trace:
        name = str(event.get("name", ""))
        if event.get("cat") == "Node" and name.endswith("_kernel_time"):
            node = name[: -len("_kernel_time")]
            durations[node].append(float(event["dur"]))
            ops[node] = str(event.get("args", {}).get("op_name", "?"))
    if not durations:
        raise DeviceError("onnxruntime's profiler recorded no node: nothing to compare per layer")
    return [Timed(node, ops[node], statistics.median(d[-runs:]), owners.of(node)) for node, d in durations.items()]


def _symbol_name(name: str) -> str:
    """A node name as the compiler spells it in a kernel's symbol."""
    return re.sub(r"[^0-9A-Za-z_]", "_", name)


def _fits(rest: str, name: str) -> bool:
    return rest.startswith(name) and (rest[len(name) :] == "" or rest[len(name) :].isdigit())


def _glue_group(symbol: str) -> str:
    """A kernel's name without the digits TVM appends to keep symbols unique."""
    return re.sub(r"\d+(_prepacked)?$", r"\1", symbol)


def _summary(names: Sequence[str]) -> str:
    """``Conv, Where x2`` from ``[Conv, Where, Where]``, in first-seen order."""
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    return ", ".join(name if n == 1 else f"{name} x{n}" for name, n in counts.items())


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _implementing(lib: Any, symbol: str) -> Any:
    """The module (``lib`` or one of its imports, depth first) that defines ``symbol``, or None."""
    pending = [lib]
    while pending:
        module = pending.pop()
        with contextlib.suppress(Exception):
            if module.implements_function(symbol, False):
                return module
        pending.extend(module.imports)
    return None
