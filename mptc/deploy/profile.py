"""Profile a compiled model on a device and write OUT/profile.json.

The module runs the reference input once (its output must match ``reference.npz``: relative error
``max|out - y| / max|y| <= 1e-4`` and the same argmax wherever the reference's top two differ by
more than that), then is timed with TVM's ``time_evaluator`` on the device itself. Given the
user's inputs, it runs those too, batch by batch, checked the same way against the model it was
compiled from (``OUT/source.onnx``, run as ``mptc compile`` ran it for the reference). Given peers
(:mod:`mptc.deploy.compare`), the module and each peer are timed in interleaved rounds on the same
input (:mod:`mptc.report.latency`), and each peer's speedup is the median of the per-round ratios.
Latency measured under qemu is 40-60x the board's and is labelled ``"emulated": true`` in every
report. ``profile.json`` is written once, atomically, at the very end; a stale one is removed
first, so a failed run never leaves a report that looks complete.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import io
import json
import logging
import signal
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from mptc import __version__
from mptc.artifact import PROFILE_FILE, REFERENCE_FILE, SOURCE_MODEL_FILE, TensorInfo, read_source_model
from mptc.boards import Board
from mptc.deploy import emulator, thread_pool
from mptc.deploy.artifact import CompiledModel, host_arch, load_compiled
from mptc.deploy.compare import Peer, check_peers, load_peers
from mptc.deploy.per_layer import per_layer as per_layer_times
from mptc.deploy.rpc import Device, LoadedModule, connect, is_lost_connection
from mptc.deploy.server import RpcServer
from mptc.deploy.settings import DEFAULT_QUEUE_TIMEOUT_S, DEFAULT_TIMEOUT_S, ROUNDS, check_counts, check_seconds
from mptc.errors import DeviceError, InputError, UnsupportedError
from mptc.hostinfo import cpuinfo
from mptc.io import read_array, write_bytes, write_text
from mptc.report.latency import SETTLE_S, WARMUP, interleaved_rounds, median_ratio, time_call
from mptc.targets.compile import reference_runner
from mptc.verify import compare_outputs, rel_tolerance

logger = logging.getLogger(__name__)

PROFILE = PROFILE_FILE
MODULE = "mptc"  # the module's name beside its peers in a comparison
EMULATED_NOTE = "run under qemu-user emulation: latency is a smoke figure (40-60x the board's), not the board's speed"
HOST_SIDE_NOTE = "onnxruntime ran on this host, not the board: the speedups compare two machines"


@dataclasses.dataclass(frozen=True)
class Inputs:
    """The user's inputs, split into the module's batches."""

    path: Path
    array: str  # its name in the file
    batches: list[np.ndarray]

    @property
    def samples(self) -> int:
        return sum(int(np.prod(batch.shape[:1])) for batch in self.batches)  # a rank-0 input is one sample


@dataclasses.dataclass(frozen=True)
class _Measurement:
    """What the device gave: outputs, the device timer's repeats (s), and the rounds (ms) per side."""

    reference_output: np.ndarray
    outputs: np.ndarray | None  # on the user's inputs
    seconds: list[float]
    rounds: dict[str, list[float]]


def profile(
    out_dir: str | Path,
    rpc: str | None = None,
    tracker: str | None = None,
    key: str | None = None,
    repeat: int = 10,
    emulated_board: str | None = None,
    number: int = 1,
    *,
    compare: Sequence[str] = (),
    rounds: int = ROUNDS,
    inputs: str | Path | None = None,
    save_outputs: str | Path | None = None,
    top_k: int | None = None,
    on_round: Callable[[int], None] | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    queue_timeout: float = DEFAULT_QUEUE_TIMEOUT_S,
    per_layer: bool = False,
    instructions: bool = False,
) -> dict[str, Any]:
    """Run OUT/module.so on a device, check it against the reference, time it, write profile.json.

    Args:
        out_dir: the output folder of ``mptc compile``.
        rpc: ``HOST:PORT`` of a TVM RPC server (e.g. ``mptc serve-device`` on the board).
        tracker: ``HOST:PORT`` of a TVM tracker; with ``key``, the kind of board to request.
        key: tracker key (e.g. ``rpi4``).
        repeat: timed repeats; the report gives their median, min and max. With ``compare``, also
            the calls per side in each round.
        emulated_board: ``rpi4``/``rpi5``/``jetson-orin``: without ``rpc``/``tracker``, start that
            emulated board here for the run; with them, state that the server is such an emulator.
        number: runs averaged inside each repeat (raise it for sub-millisecond models on a board).
        compare: peers (:data:`mptc.deploy.compare.PEERS`) to time the module against, here.
        rounds: interleaved rounds of the comparison.
        inputs: a ``.npz`` holding one array (or one named as the model's input) of N x the
            module's batch samples: run, checked against the source model, timed on the first batch.
        save_outputs: write the module's outputs (on ``inputs``, else on the reference input) to
            this ``.npz``, under the model's output name.
        top_k: add the ``top_k`` highest scores of each sample of those outputs to the report.
        on_round: told how many comparison rounds are done (0 when they start).
        timeout: seconds each network step may go without an answer (see :mod:`mptc.deploy.settings`);
            on this host, the first load and run of the module in a trial process get it too.
        queue_timeout: seconds to wait in a tracker's queue for a free board.
        per_layer: on this host only, also time each of the module's kernels beside onnxruntime's
            profile of the same model (:mod:`mptc.deploy.per_layer`), ``rounds`` runs each.
        instructions: with ``emulated_board`` started here, also count the guest instructions per
            inference of the module on that board's emulated core (:mod:`mptc.deploy.instructions`),
            and of onnxruntime's aarch64 build on the same core when ``compare`` has ``onnxruntime``.

    Returns:
        The report written to ``OUT/profile.json``.
    """
    check_counts(repeat, number, rounds, top_k)
    check_seconds(timeout, "timeout")
    check_seconds(queue_timeout, "queue_timeout")
    peer_names = check_peers(compare) if compare else ()
    per_kernel = per_layer and instructions  # on the emulated board: instructions per kernel call
    if per_layer and not per_kernel and (rpc is not None or tracker is not None or emulated_board is not None):
        raise UnsupportedError(
            "--per-layer times layers on this host only: drop --rpc/--tracker/--emulate, or count each kernel's "
            "instructions on an emulated board with --emulate BOARD --instructions"
        )
    if instructions and (emulated_board is None or rpc is not None or tracker is not None):
        raise UnsupportedError(
            "--instructions counts on a board emulated here: give --emulate BOARD, without --rpc/--tracker"
        )
    compiled = load_compiled(out_dir)
    report_path = compiled.out_dir / PROFILE  # an earlier report stays until this one is complete
    given = read_inputs(Path(inputs), compiled.manifest.input) if inputs is not None else None
    batches = given.batches if given else [compiled.x]
    timed_layers = per_layer and not per_kernel
    source = read_source_model(compiled.out_dir, compiled.manifest) if given or peer_names or timed_layers else b""
    expected = _expected_outputs(source, compiled, given) if given else None
    board = emulator.get_board(emulated_board) if emulated_board else None
    pool = thread_pool.apply(compiled.manifest.thread_pool)  # before the trial process or an emulator starts
    here = rpc is None and tracker is None and board is None
    threads = thread_pool.threads() if here else None  # a peer runs at the module's thread count
    peers = load_peers(peer_names, source, compiled.manifest.input.name, batches, threads) if peer_names else []
    with _open_device(compiled, board, rpc, tracker, key, timeout, queue_timeout) as (device, board, server):
        try:
            module = LoadedModule(device, compiled)
            measurement = _measure(module, compiled, given, peers, repeat, number, rounds, on_round)
            layers = per_layer_times(compiled, source, rounds=rounds, repeat=repeat) if timed_layers else None
        except DeviceError as error:
            explained = _explained(error, compiled, board, server)
            if explained is None:
                raise
            raise explained from error
    report = _report(compiled, device, board, measurement, repeat, number)
    outputs = measurement.outputs if measurement.outputs is not None else measurement.reference_output
    if given is not None and expected is not None:
        expected_outputs, checker = expected
        report["inputs"] = {
            "file": str(given.path),
            "array": given.array,
            "samples": given.samples,
            "batches": len(given.batches),
            "checked_against": checker,
            **compare_outputs(outputs, expected_outputs, rel_tolerance(compiled.manifest.activations.dtype)),
        }
    if peers:
        report["compare"] = _comparison(peers, measurement, device, board, given, batches, outputs, repeat, rounds)
    report["thread_pool"] = _thread_pool(compiled, device, pool)
    if layers is not None:
        report["per_layer"] = layers
    if instructions and board is not None:
        report["instructions"] = _instructions(compiled.out_dir, board, "onnxruntime" in peer_names, per_kernel)
    if top_k is not None:
        report["top_k"] = top_classes(outputs, top_k)
    if save_outputs is not None:
        _save_outputs(Path(save_outputs), compiled.manifest.output.name, outputs)
        report["saved_outputs"] = str(save_outputs)
    write_text(report_path, json.dumps(report, indent=2) + "\n")
    logger.info("wrote %s", report_path)
    return report


def read_inputs(path: Path, signature: TensorInfo) -> Inputs:
    """The user's inputs: the one array of a ``.npz`` (or ``.npy``), or the one named as the model's
    input, of the module's dtype and ``N x`` its batch, split into batches.

    Raises:
        InputError: unreadable, no such array, another dtype, or a shape that is no whole number of batches.
    """
    name, array = read_array(path, signature.name, "the model's input")
    if str(array.dtype) != signature.dtype:
        raise InputError(
            f"{path}: '{name}' is {array.dtype}, the module takes {signature.dtype}{signature.shape} "
            f"(convert it: x.astype(np.{signature.dtype}))"
        )
    if list(array.shape) == signature.shape:
        return Inputs(path, name, [np.ascontiguousarray(array)])
    batch, rest = (signature.shape[0], signature.shape[1:]) if signature.shape else (1, [])
    if array.ndim != len(signature.shape) or list(array.shape[1:]) != rest or not len(array) or len(array) % batch:
        raise InputError(
            f"{path}: '{name}' has shape {list(array.shape)}, the module takes {signature.shape}: "
            f"give a whole multiple of {batch} sample(s) of shape {rest}"
        )
    return Inputs(path, name, [np.ascontiguousarray(array[i : i + batch]) for i in range(0, len(array), batch)])


def top_classes(outputs: np.ndarray, k: int) -> list[list[dict[str, Any]]]:
    """The ``k`` highest scores of each sample (first axis; an output of rank < 2 is one sample), best first."""
    scores = outputs.reshape(len(outputs), -1) if outputs.ndim >= 2 else outputs.reshape(1, -1)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return [[{"class": int(c), "score": float(row[c])} for c in best] for row, best in zip(scores, order)]


def _expected_outputs(source: bytes, compiled: CompiledModel, given: Inputs) -> tuple[np.ndarray, str]:
    """The source model's outputs on the user's inputs, and what computed them."""
    run, runtime = reference_runner(onnx.load_from_string(source), compiled.manifest.input.name)
    return _joined([run(batch) for batch in given.batches]), f"{runtime} on {SOURCE_MODEL_FILE}"


def _joined(outputs: list[np.ndarray]) -> np.ndarray:
    """Batch outputs as one array of all samples."""
    return outputs[0] if len(outputs) == 1 else np.concatenate([np.atleast_1d(o) for o in outputs])


@contextlib.contextmanager
def _open_device(
    compiled: CompiledModel,
    board: Board | None,
    rpc: str | None,
    tracker: str | None,
    key: str | None,
    timeout: float,
    queue_timeout: float,
) -> Iterator[tuple[Device, Board | None, RpcServer | None]]:
    """The device the options name, and the emulated board if it is one; an emulator started here
    (``board`` without ``rpc``/``tracker``) is stopped on leaving, and its log tells a crash's cause."""
    if board is not None and rpc is None and tracker is None:
        if compiled.arch != "aarch64":
            raise _arch_mismatch(compiled, "aarch64", f"the emulated {board.description}")
        with emulator.emulated_board(board.name) as server:
            yield (
                dataclasses.replace(connect(rpc=server.address, timeout=timeout), connection="emulator"),
                board,
                server,
            )
        return
    device = connect(rpc=rpc, tracker=tracker, key=key, timeout=timeout, queue_timeout=queue_timeout)
    if board is not None and device.emulated_board not in (None, board):
        logger.warning("--emulate %s, but the server emulates %s", board.name, device.emulated_board.name)
    board = device.emulated_board or board
    _check_arch(compiled, device, board)
    yield device, board, None


def _measure(
    module: LoadedModule,
    compiled: CompiledModel,
    given: Inputs | None,
    peers: list[Peer],
    repeat: int,
    number: int,
    rounds: int,
    on_round: Callable[[int], None] | None,
) -> _Measurement:
    """Run the reference input and the user's, time the module, then the rounds beside the peers."""
    reference_output = module.run(compiled.x, f"the {REFERENCE_FILE} input")
    outputs = None
    if given is not None:
        outputs = _joined([module.run(b, f"batch {i + 1} of {given.path}") for i, b in enumerate(given.batches)])
    x = given.batches[0] if given else compiled.x
    seconds = module.time(x, repeat=repeat, number=number)
    if not peers:
        return _Measurement(reference_output, outputs, seconds, {})
    timers = {MODULE: _module_timer(module, x, repeat, number)}
    timers.update((peer.name, _call_timer(peer.call(x), repeat)) for peer in peers)
    return _Measurement(reference_output, outputs, seconds, interleaved_rounds(timers, rounds, on_round))


def _module_timer(module: LoadedModule, x: np.ndarray, repeat: int, number: int) -> Callable[[], float]:
    """One round of the module, in ms: here timed as the peers are (a call from Python, so that
    neither side is spared its call overhead); on a board by the board's own timer."""
    if module.device.session is None:
        return _call_timer(module.call(x), repeat)
    return lambda: statistics.median(module.time(x, repeat=repeat, number=number)) * 1e3


def _call_timer(call: Callable[[], object], repeat: int) -> Callable[[], float]:
    return lambda: time_call(call, repeat)["median"]


def _comparison(
    peers: list[Peer],
    measurement: _Measurement,
    device: Device,
    board: Board | None,
    given: Inputs | None,
    batches: list[np.ndarray],
    outputs: np.ndarray,
    repeat: int,
    rounds: int,
) -> dict[str, Any]:
    """The ``compare`` section: each side's rounds, each peer's speedup and argmax agreement."""
    on_device = device.session is not None
    module_ms = measurement.rounds[MODULE]
    how = (
        f"the module by the device's own timer (median of {repeat} repeats per round), the peers by the "
        f"wall clock of InferenceSession.run on this host (median of {repeat} calls after {WARMUP} warm-up calls)"
        if on_device
        else f"every side by the wall clock of one call from Python (the module's VM call, onnxruntime's "
        f"InferenceSession.run), median of {repeat} calls after {WARMUP} warm-up calls"
    )
    section: dict[str, Any] = {
        "input": f"batch 1 of {given.path}" if given else f"x of {REFERENCE_FILE}",
        "rounds": rounds,
        "method": f"{rounds} interleaved rounds, each side {SETTLE_S * 1e3:.0f} ms after the other, {how}; speedup = peer / {MODULE} per round, median over rounds",
        MODULE: {"median_ms": statistics.median(module_ms), "round_ms": module_ms},
        "peers": {},
    }
    for peer in peers:
        peer_ms = measurement.rounds[peer.name]
        peer_outputs = _joined([peer.run(batch) for batch in batches])
        section["peers"][peer.name] = {
            "description": peer.description,
            "ran_on": "this host",
            "median_ms": statistics.median(peer_ms),
            "round_ms": peer_ms,
            "speedup": median_ratio(peer_ms, module_ms),
            "argmax_agreement": _argmax_agreement(peer_outputs, outputs),
        }
    if on_device:
        section["note"] = HOST_SIDE_NOTE + (" (and the board is emulated)" if board is not None else "")
    return section


def _instructions(out_dir: Path, board: Board, with_peer: bool, per_kernel: bool) -> dict[str, Any]:
    """The ``instructions`` section: guest instructions per inference on ``board``'s emulated core,
    by class, of the module and (``with_peer``) of onnxruntime's aarch64 build, and their ratio;
    with ``per_kernel``, each kernel call's instructions too (``per_kernel``, in call order)."""
    from mptc.deploy import instructions

    runs = instructions.DEFAULT_RUNS
    section: dict[str, Any] = {"board": board.name, "core": board.qemu_cpu, "runs": runs, "threads": 1}
    if with_peer:
        counted = instructions.compare_instructions(out_dir, board.name, runs=runs)
        section.update(
            mptc=dataclasses.asdict(counted.mptc),
            onnxruntime=dataclasses.asdict(counted.onnxruntime),
            peer=f"{counted.peer} (aarch64) on the fp32 network of {SOURCE_MODEL_FILE}",
            ratio=counted.ratio,
        )
    else:
        section["mptc"] = dataclasses.asdict(instructions.instruction_counts(out_dir, board.name, runs=runs))
    if per_kernel:
        section["per_kernel"] = [
            {"kernel": k.kernel, "output_shape": list(k.output_shape), **dataclasses.asdict(k.counts)}
            for k in instructions.kernel_instructions(out_dir, board.name)
        ]
    if board.num_cores > 1:
        section["cores"] = _core_split(out_dir, board)
    return section


CORE_SPLIT_RUNS = 2
"""Inferences each count of the split over a board's cores takes: the counts repeat exactly, and a
large model takes seconds per inference under qemu."""


def _core_split(out_dir: Path, board: Board) -> dict[str, Any]:
    """The ``cores`` part of the instructions section: the module's code instructions at 1 thread
    and per thread at one thread per core of ``board`` (``instructions.thread_instructions``)."""
    from mptc.deploy import instructions

    counted = instructions.core_split(out_dir, board.name, threads=board.num_cores, runs=CORE_SPLIT_RUNS)
    split = counted.split
    return {
        "threads": split.threads,
        "runs": CORE_SPLIT_RUNS,
        "one_thread": counted.one_thread,
        "per_thread": list(split.per_thread),
        "work": split.work,
        "balance": split.balance,
        "critical_path_gain": counted.critical_path_gain,
    }


def _thread_pool(compiled: CompiledModel, device: Device, environment: dict[str, str]) -> dict[str, Any]:
    """The ``thread_pool`` section: the manifest's settings, and those the module ran with where known."""
    section: dict[str, Any] = {"recorded": dataclasses.asdict(compiled.manifest.thread_pool)}
    if device.session is None or device.connection == "emulator":
        section["environment"] = environment
        section["ran_with"] = thread_pool.describe(environment)
    else:
        section["environment"] = None
        section["ran_with"] = "as the board's RPC server's environment sets TVM's pool (docs/deploy.md)"
    return section


def _argmax_agreement(a: np.ndarray, b: np.ndarray) -> float | None:
    """Fraction of samples whose argmax (last axis) is the same in ``a`` and ``b``; None if not comparable."""
    if a.shape != b.shape or not a.ndim:
        return None
    return float(np.mean(np.argmax(a, axis=-1) == np.argmax(b, axis=-1)))


def _save_outputs(path: Path, name: str, outputs: np.ndarray) -> None:
    buffer = io.BytesIO()
    arrays: dict[str, Any] = {name: outputs}
    np.savez(buffer, **arrays)
    write_bytes(path, buffer.getvalue())


def _explained(
    error: DeviceError, compiled: CompiledModel, board: Board | None, server: RpcServer | None
) -> DeviceError | None:
    """A clearer error than ``error`` when the device's process died and the cause is known; else None."""
    lost = error.__cause__ is not None and is_lost_connection(error.__cause__)
    crash = _crash_signal(server) if lost and server is not None else None
    return _explain_crash(error, compiled, board, crash, lost)


def _crash_signal(server: RpcServer) -> int | None:
    """The signal that killed the server's session, if it logs one (a moment after the crash)."""
    deadline = time.monotonic() + 3.0
    while (found := server.crash_signal()) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


def _check_arch(compiled: CompiledModel, device: Device, board: Board | None) -> None:
    """Refuse a module the device cannot load, before sending it (its loader would say "No such file")."""
    if device.session is None:
        if compiled.arch != host_arch():
            hint = (
                f" or emulate it (--emulate {compiled.board})" if compiled.board else " or emulate one (--emulate rpi4)"
            )
            raise _arch_mismatch(compiled, host_arch(), "this host", f"; run it on its board (--rpc/--tracker){hint}")
    elif board is not None and compiled.arch != "aarch64":
        raise _arch_mismatch(compiled, "aarch64", f"the emulated {board.description}")


def _arch_mismatch(compiled: CompiledModel, device_arch: str, device: str, hint: str = "") -> InputError:
    return InputError(
        f"{compiled.module_path} is an {compiled.arch} module (target {compiled.target_summary()}"
        f"{', board ' + compiled.board if compiled.board else ''}) and cannot run on {device} "
        f"({device_arch}){hint or ': compile it for that device'}"
    )


def _explain_crash(
    error: DeviceError, compiled: CompiledModel, board: Board | None, crash_signal: int | None, lost: bool
) -> DeviceError | None:
    """A clearer error when the device's process died (SIGILL: a missing CPU feature); None if none."""
    lacking = emulator.missing_features(board, compiled.target.get("mattr") or []) if board else []
    core = board.qemu_cpu if board else "the board's CPU"
    if crash_signal == signal.SIGILL:
        verb = "is" if len(lacking) == 1 else "are"
        detail = f"; {', '.join(lacking)} {verb} not available on {core}" if lacking else ""
        rebuild = f"board {board.name}" if board else "this board"
        return DeviceError(
            f"the board's CPU ({core}) lacks an instruction the module uses: the run died with SIGILL "
            f"(illegal instruction); module built for {compiled.target_summary()}{detail}. "
            f"Compile the model for {rebuild}"
        )
    if crash_signal is not None:
        return DeviceError(f"{error}; the server's session died from {signal.Signals(crash_signal).name}")
    if lacking and lost:
        return DeviceError(f"{error}; likely cause: the module uses {', '.join(lacking)}, which {core} lacks (SIGILL)")
    return None


def _report(
    compiled: CompiledModel, device: Device, board: Board | None, measurement: _Measurement, repeat: int, number: int
) -> dict[str, Any]:
    samples_ms = [s * 1e3 for s in measurement.seconds]
    return {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "mptc_version": __version__,
        "module": str(compiled.module_path),
        "target": compiled.target,
        "board": compiled.board,
        "emulated": board is not None,
        "device": _describe(device, board, compiled),
        "latency_ms": {
            "median": statistics.median(samples_ms),
            "min": min(samples_ms),
            "max": max(samples_ms),
            "mean": statistics.fmean(samples_ms),
        },
        "samples_ms": samples_ms,
        "repeat": repeat,
        "number": number,
        **compare_outputs(measurement.reference_output, compiled.y, rel_tolerance(compiled.manifest.activations.dtype)),
        **({"note": EMULATED_NOTE} if board is not None else {}),
    }


def _describe(device: Device, board: Board | None, compiled: CompiledModel) -> dict[str, Any]:
    if board is not None:
        text = f"{board.description}, emulated by qemu-aarch64 -cpu {board.qemu_cpu} on an {host_arch()} host"
    elif device.session is None:
        text = f"this host: {cpuinfo().model or host_arch()} ({host_arch()})"
    else:
        text = device.where() + (f" (module built for {compiled.board})" if compiled.board else "")
    return {
        "description": text,
        "connection": device.connection,
        "address": device.address,
        "key": device.key,
        "arch": compiled.arch,
        "emulated_board": board.name if board else None,
        "qemu_cpu": board.qemu_cpu if board else None,
    }
