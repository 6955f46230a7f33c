"""``mptc profile`` and ``mptc serve-device``: run compiled modules on a board (or an emulated one)."""

from __future__ import annotations

import ipaddress
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from mptc.boards import BOARDS
from mptc.cli.options import emulate_option, key_option, rpc_option, tracker_option
from mptc.cli.progress import bar
from mptc.deploy.emulator import SETUP_SCRIPT
from mptc.deploy.settings import (
    DEFAULT_QUEUE_TIMEOUT_S,
    DEFAULT_TIMEOUT_S,
    MAX_NUMBER,
    MAX_REPEAT,
    MAX_ROUNDS,
    ROUNDS,
    check_device_options,
    check_seconds,
)
from mptc.errors import DeviceError, MptcError, UnsupportedError, VerificationError

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class ProfileOptions:
    out_dir: Path
    rpc: str | None
    tracker: str | None
    key: str | None
    emulate: str | None
    repeat: int
    number: int
    compare: tuple[str, ...]
    rounds: int
    inputs: Path | None
    save_outputs: Path | None
    top_k: int | None
    timeout: float
    queue_timeout: float
    per_layer: bool
    instructions: bool


class RoundBar:
    """A bar over the comparison's rounds, shown once they have run for a second (tqdm's delay)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.bar: Any = None

    def __call__(self, done: int) -> None:
        if self.bar is None:  # made when the rounds start, so the delay counts from there
            self.bar = bar(total=self.total, unit="round", desc="timing", delay=1.0, leave=False)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _peers(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, ...]:
    """``a,b`` -> ``("a", "b")``, each a known peer."""
    if value is None:
        return ()
    from mptc.deploy.compare import check_peers  # deferred: it imports onnx

    try:
        return check_peers([name.strip() for name in value.split(",")])
    except UnsupportedError as error:
        raise click.BadParameter(str(error), ctx=ctx, param=param) from error


def _seconds(ctx: click.Context, param: click.Parameter, value: float) -> float:
    try:
        return check_seconds(value, param.opts[0])
    except MptcError as error:
        raise click.BadParameter(str(error), ctx=ctx, param=param) from error


@click.command("profile")
@click.argument("out_dir", metavar="OUT", type=click.Path(file_okay=False, path_type=Path))
@rpc_option()
@tracker_option()
@key_option()
@emulate_option(
    "Alone: start this board emulated under qemu for the run. With --rpc/--tracker: "
    "state that the server is such an emulator."
)
@click.option("--repeat", type=click.IntRange(1, MAX_REPEAT), default=10, show_default=True, help="Timed repeats.")
@click.option(
    "--number",
    type=click.IntRange(1, MAX_NUMBER),
    default=1,
    show_default=True,
    help="Runs averaged inside each repeat (raise it for sub-millisecond models).",
)
@click.option(
    "--compare",
    metavar="PEER[,PEER]",
    callback=_peers,
    help="Time the module beside peers run on this host on the same input: onnxruntime (fp32) and/or "
    "onnxruntime-int8 (its static INT8 quantization), both on the model compiled, at the module's "
    "thread count when it runs here.",
)
@click.option(
    "--rounds",
    type=click.IntRange(1, MAX_ROUNDS),
    default=ROUNDS,
    show_default=True,
    help="Interleaved rounds of --compare, each timing every side --repeat times.",
)
@click.option(
    "--per-layer",
    is_flag=True,
    help="On this host: also time each kernel of the module beside onnxruntime's profiler on "
    "OUT/source.onnx (fp32, at the module's thread count), matched per layer, --rounds runs each: "
    "which layers lose. With --emulate BOARD --instructions: count each kernel call's instructions "
    "on the emulated core instead. Not over --rpc/--tracker.",
)
@click.option(
    "--instructions",
    is_flag=True,
    help="With --emulate: also count guest instructions per inference on the board's emulated core "
    "(deterministic, 1 thread; a board-free speed figure), and how the module's code splits over "
    "the board's cores (one thread each); with --compare onnxruntime those of onnxruntime's "
    "aarch64 build on the same core, and their ratio.",
)
@click.option(
    "--inputs",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A .npz of your inputs (one array, or one named as the model's input; N x the module's batch): "
    "run and checked against the model compiled.",
)
@click.option(
    "--save-outputs",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the module's outputs (on --inputs, else on the reference input) to this .npz.",
)
@click.option("--top-k", type=click.IntRange(min=1), help="Show the K highest scores of each sample's output.")
@click.option(
    "--timeout",
    metavar="SECONDS",
    type=float,
    default=DEFAULT_TIMEOUT_S,
    show_default=True,
    callback=_seconds,
    help="Seconds each network step may go without an answer (connect, handshake, each tracker reply, "
    "upload, load, each call; runs and timing get their expected duration on top) before the device "
    "counts as stalled.",
)
@click.option(
    "--queue-timeout",
    metavar="SECONDS",
    type=float,
    default=DEFAULT_QUEUE_TIMEOUT_S,
    show_default=True,
    callback=_seconds,
    help="Seconds to wait in the tracker's queue for a free board.",
)
def profile_command(**options: Any) -> None:
    """Run OUT/module.so on a device, check it against OUT/reference.npz, time it.

    Writes OUT/profile.json (median/min/max latency in ms, the device, whether it was emulated,
    whether the outputs match the reference to 1e-4 relative with the same argmax). Without
    --rpc, --tracker or --emulate the module runs on this machine, if it was built for it.

    --compare times the module and each peer in turn, round after round, on the same input and
    reports each peer's median latency and its speedup (peer / module, the median of the
    per-round ratios). The peers run OUT/source.onnx on this host, also when the module runs on a
    board: the speedup then compares two machines.

    --per-layer (this host only) times each kernel of the module beside onnxruntime's profiler on
    OUT/source.onnx and prints one row per layer, slowest first: rows are matched by layer name
    only, and TVM's fused glue and the nodes onnxruntime made or renamed are listed unmatched
    (a Winograd 3x3 conv's GEMMs too: its own row holds its two transforms). With --emulate
    BOARD --instructions it counts each kernel call's guest instructions on the emulated core
    instead: where an aarch64 build spends its work.

    TVM's thread pool runs as OUT/manifest.json records (thread_pool; printed as "threads:"):
    every core, a short spin after each kernel, threads not bound to cores. Variables you set
    (TVM_NUM_THREADS, TVM_THREAD_POOL_SPIN_COUNT, TVM_BIND_THREADS) win.

    Emulated latency (qemu) is 40-60x a real board's: a smoke figure, labelled "emulated" in
    the report. --instructions adds the board-free figure that repeats exactly: guest
    instructions per inference on the emulated core, beside onnxruntime's aarch64 build with
    --compare onnxruntime. The emulator needs a one-time set-up: make arm-emulator.

    \b
    Examples:
      mptc profile runs/mlp/out --emulate rpi4
      mptc profile runs/mlp/out --rpc 192.168.1.20:9090 --repeat 50
      mptc profile runs/mlp/out --tracker 10.0.0.2:9190 --key rpi5
      mptc profile runs/mlp/out --compare onnxruntime,onnxruntime-int8
      mptc profile runs/mlp/out --per-layer --rounds 5     # which layers lose to onnxruntime
      mptc profile runs/mlp/rpi4 --emulate rpi4 --instructions --compare onnxruntime
      mptc profile runs/mlp/rpi4 --emulate rpi4 --instructions --per-layer
      mptc profile runs/mlp/out --inputs digits.npz --save-outputs logits.npz --top-k 3
    """
    from mptc.deploy.profile import MODULE, PROFILE, profile  # deferred: importing TVM takes seconds

    o = ProfileOptions(**options)
    check_device_options(o.rpc, o.tracker, o.key)
    rounds = RoundBar(o.rounds)
    try:
        report = profile(
            o.out_dir,
            rpc=o.rpc,
            tracker=o.tracker,
            key=o.key,
            repeat=o.repeat,
            emulated_board=o.emulate,
            number=o.number,
            compare=o.compare,
            rounds=o.rounds,
            inputs=o.inputs,
            save_outputs=o.save_outputs,
            top_k=o.top_k,
            on_round=rounds,
            timeout=o.timeout,
            queue_timeout=o.queue_timeout,
            per_layer=o.per_layer,
            instructions=o.instructions,
        )
    finally:
        rounds.close()
    latency = report["latency_ms"]
    label = "  [EMULATED under qemu: not the board's speed]" if report["emulated"] else ""
    click.echo(f"device:  {report['device']['description']}")
    click.echo(f"threads: {report['thread_pool']['ran_with']}")
    click.echo(
        f"latency: median {latency['median']:.4g} ms (min {latency['min']:.4g}, max {latency['max']:.4g}) "
        f"over {report['repeat']} x {report['number']} runs{label}"
    )
    _check(report, "the reference", o.out_dir / PROFILE)
    click.echo(f"outputs: match the reference (max relative error {report['max_rel_error']:.2g}, argmax equal)")
    if "inputs" in report:
        given = report["inputs"]
        _check(given, f"{given['checked_against']} on {given['file']}", o.out_dir / PROFILE)
        click.echo(
            f"inputs:  {given['samples']} sample(s) of {given['file']} match {given['checked_against']} "
            f"(max relative error {given['max_rel_error']:.2g}, argmax equal)"
        )
    if "compare" in report:
        _echo_comparison(report["compare"], MODULE)
    if "per_layer" in report:
        _echo_per_layer(report["per_layer"])
    if "instructions" in report:
        _echo_instructions(report["instructions"])
    for i, best in enumerate(report.get("top_k", [])):
        click.echo(f"top-{o.top_k}:   sample {i}: " + ", ".join(f"{c['class']} ({c['score']:.4g})" for c in best))
    if "saved_outputs" in report:
        click.echo(f"saved:   {report['saved_outputs']}")
    click.echo(f"report:  {o.out_dir / PROFILE}")


def _check(section: dict[str, Any], against: str, report: Path) -> None:
    """Exit 5 (the report is written) when ``section``'s outputs differ from what they are checked against."""
    if section["outputs_match"]:
        return
    nonfinite = [
        f"the {name[: -len('_nonfinite')]} holds {what}"
        for name, what in section.items()
        if name.endswith("_nonfinite")
    ]
    if nonfinite:
        raise VerificationError(f"outputs cannot be checked against {against}: {'; '.join(nonfinite)}; see {report}")
    raise VerificationError(
        f"outputs differ from {against} (max relative error {section.get('max_rel_error', 'n/a')}, "
        f"argmax equal: {section.get('argmax_match', False)}); see {report}"
    )


def _echo_comparison(section: dict[str, Any], module: str) -> None:
    """One line per side: median latency, and each peer's speedup and what it ran."""
    click.echo(f"compare: {section['method']}; on {section['input']}")
    click.echo(f"  {module:<18} {section[module]['median_ms']:>10.4g} ms")
    for name, peer in section["peers"].items():
        agreement = peer["argmax_agreement"]
        agrees = f", argmax agrees on {agreement:.0%}" if agreement is not None else ""
        click.echo(f"  {name:<18} {peer['median_ms']:>10.4g} ms  speedup {peer['speedup']:.2f}x{agrees}")
        click.echo(f"    {peer['description']}")
    if "note" in section:
        click.echo(f"  note: {section['note']}")


def _echo_instructions(section: dict[str, Any]) -> None:
    """Instructions per inference of the module (and the peer) on the emulated core."""
    mine = section["mptc"]
    cnt = mine["neon_cnt"] / mine["total"] if mine["total"] else 0.0
    click.echo(
        f"instructions: {mine['total']:,.0f} per inference on emulated {section['core']} "
        f"({section['runs']} counted, 1 thread; NEON cnt {cnt:.1%})"
    )
    if "onnxruntime" in section:
        click.echo(
            f"  {section['peer']}: {section['onnxruntime']['total']:,.0f} per inference, "
            f"{section['ratio']:.2f}x the module's"
        )
    if "cores" in section:
        cores = section["cores"]
        click.echo(
            f"  on the board's {cores['threads']} cores: the module's code splits with balance "
            f"{cores['balance']:.3f}, {cores['per_thread'][0]:,.0f} on the busiest thread of "
            f"{cores['one_thread']:,.0f} at 1 thread: a {cores['critical_path_gain']:.2f}x shorter critical path "
            "(the thread pool's waiting not counted)"
        )
    if "per_kernel" in section:
        rows = section["per_kernel"]
        click.echo(f"  per kernel call, most first (the VM's dispatch of each call included; {len(rows)} calls):")
        click.echo(f"  {'instructions':>14} {'share':>6} {'NEON cnt':>9}  kernel (output shape)")
        for row in sorted(rows, key=lambda r: -r["total"]):
            cnt = row["neon_cnt"] / row["total"] if row["total"] else 0.0
            shape = "x".join(str(d) for d in row["output_shape"])
            share = row["total"] / mine["total"] if mine["total"] else 0.0
            click.echo(f"  {row['total']:>14,.0f} {share:>6.1%} {cnt:>9.1%}  {row['kernel']} ({shape})")


def _echo_per_layer(section: dict[str, Any]) -> None:
    """The per-layer table, and what was matched."""
    from mptc.deploy.per_layer import format_table

    rows = section["rows"]
    click.echo(f"per layer: {section['method']}")
    click.echo(
        f"  {section['matched']} of {len(rows)} rows matched by layer name; unmatched rows are grouped by the "
        "module's kernel, led by its output shape (TVM's fused glue names no layer), or onnxruntime's op type"
    )
    for line in format_table(section):
        click.echo(f"  {line}")


def _host(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """An address to bind: never empty (an empty host binds every interface, silently)."""
    if not value or value != value.strip() or any(c.isspace() or not c.isprintable() for c in value):
        raise click.BadParameter(f"expected an address to bind, e.g. 127.0.0.1, got {value!r}", ctx=ctx, param=param)
    return value


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def _check_can_listen(host: str, port: int) -> None:
    """Raise a DeviceError unless ``host:port`` can be bound now (an address of this machine, a free port)."""
    try:
        family = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)[0][0]
        with socket.create_server((host.strip("[]"), port), family=family):
            pass
    except OSError as error:
        raise DeviceError(f"cannot listen on {host}:{port}: {error.strerror or error}") from error


@click.command("serve-device")
@click.option(
    "--host",
    default=LOOPBACK,
    show_default=True,
    callback=_host,
    help="Address to bind. The server has no authentication and runs any library it is sent: anything but "
    "loopback lets whoever reaches the port run code here (a warning says so).",
)
@click.option("--port", type=click.IntRange(1, 65535), default=9090, show_default=True, help="Port to bind.")
@tracker_option("Register with this TVM tracker (needs --key).")
@key_option(default="")
@click.option("--emulate", type=click.Choice(list(BOARDS)), help="Serve an emulated board from this machine (qemu).")
def serve_device_command(host: str, port: int, tracker: str | None, key: str, emulate: str | None) -> None:
    """Serve this board (or an emulated one) over TVM RPC until Ctrl-C.

    On the board only TVM's runtime is needed, not mptc's compiler: install the aarch64 wheels
    and drop the compiler library (the emulator's set-up does the same):

    \b
      pip install apache-tvm==0.27.0.post1 apache-tvm-ffi numpy ml_dtypes cloudpickle psutil
      rm "$(python -c 'import tvm, os; print(os.path.dirname(tvm.__file__))')/lib/libtvm_compiler.so"
      export TVM_USE_RUNTIME_LIB=1
      export TVM_THREAD_POOL_SPIN_COUNT=1000 TVM_BIND_THREADS=0     # mptc serve-device sets these itself
      python -m tvm.exec.rpc_server --host 127.0.0.1 --port 9090    # the same server, without mptc

    Use the same apache-tvm-ffi version as the machine that compiles. The server listens on
    127.0.0.1 unless --host says otherwise: it has no authentication and runs whatever library
    it is sent, so reach it through an SSH tunnel from the compiling machine
    (ssh -N -L 9090:localhost:9090 BOARD, then mptc profile OUT --rpc localhost:9090). Bind
    another address (--host 0.0.0.0) only on a private network you trust, e.g. to register with a
    tracker on another machine. (Each profile first checks the server with a probe key; the
    server logs it as "mismatch key": harmless.)

    \b
    Examples:
      mptc serve-device                                   # on the board, for an SSH tunnel
      mptc serve-device --host 0.0.0.0 --tracker 10.0.0.2:9190 --key rpi4   # a private network
      mptc serve-device --emulate rpi5 --port 9095        # an emulated Pi 5 on this machine
    """
    from mptc.artifact import ThreadPool
    from mptc.deploy import thread_pool
    from mptc.deploy.emulator import emulated_board
    from mptc.deploy.server import RpcServer
    from mptc.deploy.settings import parse_address

    check_device_options(None, tracker, key)
    if tracker is not None and _is_loopback(host) and not _is_loopback(parse_address(tracker, "--tracker")[0]):
        raise click.UsageError(
            f"--tracker {tracker} is another machine, and it hands out this server's address as it sees it, "
            f"but the server would listen on {host} only: pass --host (e.g. --host 0.0.0.0, on a private network)"
        )
    if not _is_loopback(host):
        click.echo(
            f"mptc: warning: listening on {host}:{port}: the RPC server has no authentication and runs any "
            "library it is sent, so whoever can reach this port can run code here as this user. Keep it to a "
            "private network you trust, or bind 127.0.0.1 and use an SSH tunnel (docs/deploy.md, Security)",
            err=True,
        )
    _check_can_listen(host, port)  # else the server's own traceback would say it, from its process
    thread_pool.apply(ThreadPool())  # the server's process inherits them: mptc's settings of TVM's pool
    if emulate:
        server = emulated_board(emulate, host=host, port=port, tracker=tracker, key=key, capture_log=False)
        what = f"an emulated {BOARDS[emulate].description} (set up by {SETUP_SCRIPT})"
    else:
        server = RpcServer([sys.executable], host=host, port=port, tracker=tracker, key=key, capture_log=False)
        what = "this machine"
    # SIGTERM must unwind the `with` below, or the server's process group would outlive us.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        with server:
            reach = "this machine only" if _is_loopback(host) else "every host that can reach it"
            where = f"tracker {tracker}, key {key}" if tracker else f"mptc profile OUT --rpc {server.address}"
            click.echo(
                f"serving {what}, listening on {server.host}:{server.port} ({reach}; {where}); Ctrl-C stops", err=True
            )
            code = server.wait()
    except KeyboardInterrupt:
        click.echo("stopped", err=True)
        return
    raise DeviceError(
        f"the RPC server on {server.host}:{server.port} stopped (exit code {code}); the log above says why "
        "(an illegal instruction / SIGILL means a module used an instruction this CPU lacks)"
    )
