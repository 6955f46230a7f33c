"""``mptc profile`` and ``mptc serve-device``: run compiled modules on a board (or an emulated one)."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import click

from mptc.boards import BOARDS
from mptc.deploy.emulator import SETUP_SCRIPT
from mptc.errors import DeviceError, VerificationError


@click.command("profile")
@click.argument("out_dir", metavar="OUT", type=click.Path(file_okay=False, path_type=Path))
@click.option("--rpc", metavar="HOST:PORT", help="A TVM RPC server on the board (see `mptc serve-device`).")
@click.option("--tracker", metavar="HOST:PORT", help="A TVM tracker that hands out boards; needs --key.")
@click.option("--key", metavar="KEY", help="The kind of board to ask the tracker for (e.g. rpi4).")
@click.option(
    "--emulate",
    type=click.Choice(list(BOARDS)),
    help="Alone: start this board emulated under qemu for the run. With --rpc/--tracker: "
    "state that the server is such an emulator.",
)
@click.option("--repeat", type=click.IntRange(min=1), default=10, show_default=True, help="Timed repeats.")
@click.option(
    "--number",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Runs averaged inside each repeat (raise it for sub-millisecond models).",
)
def profile_command(
    out_dir: Path, rpc: str | None, tracker: str | None, key: str | None, emulate: str | None, repeat: int, number: int
) -> None:
    """Run OUT/module.so on a device, check it against OUT/reference.npz, time it.

    Writes OUT/profile.json (median/min/max latency in ms, the device, whether it was emulated,
    whether the outputs match the reference to 1e-4 relative with the same argmax). Without
    --rpc, --tracker or --emulate the module runs on this machine, if it was built for it.

    Emulated latency (qemu) is 40-60x a real board's: a smoke figure, labelled "emulated" in
    the report. The emulator needs a one-time set-up: scripts/setup_arm_emulator.sh.

    \b
    Examples:
      mptc profile runs/mlp/out --emulate rpi4
      mptc profile runs/mlp/out --rpc 192.168.1.20:9090 --repeat 50
      mptc profile runs/mlp/out --tracker 10.0.0.2:9190 --key rpi5
    """
    from mptc.deploy.profile import PROFILE, profile  # deferred: importing TVM takes seconds

    if rpc and tracker:
        raise click.UsageError("give either --rpc or --tracker, not both")
    if tracker and not key:
        raise click.UsageError("--tracker needs --key (the kind of board, e.g. rpi4)")
    report = profile(out_dir, rpc=rpc, tracker=tracker, key=key, repeat=repeat, emulated_board=emulate, number=number)
    latency = report["latency_ms"]
    label = "  [EMULATED under qemu: not the board's speed]" if report["emulated"] else ""
    click.echo(f"device:  {report['device']['description']}")
    click.echo(
        f"latency: median {latency['median']:.4g} ms (min {latency['min']:.4g}, max {latency['max']:.4g}) "
        f"over {report['repeat']} x {report['number']} runs{label}"
    )
    if not report["outputs_match"]:
        raise VerificationError(
            f"outputs differ from the reference (max relative error {report.get('max_rel_error', 'n/a')}, "
            f"argmax equal: {report.get('argmax_match', False)}); see {out_dir / PROFILE}"
        )
    click.echo(f"outputs: match the reference (max relative error {report['max_rel_error']:.2g}, argmax equal)")
    click.echo(f"report:  {out_dir / PROFILE}")


@click.command("serve-device")
@click.option("--host", default=None, help="Address to bind  [default: 0.0.0.0; 127.0.0.1 with --emulate].")
@click.option("--port", type=click.IntRange(1, 65535), default=9090, show_default=True, help="Port to bind.")
@click.option("--tracker", metavar="HOST:PORT", help="Register with this TVM tracker (needs --key).")
@click.option("--key", metavar="KEY", default="", help="The kind of board, as the tracker hands it out (e.g. rpi4).")
@click.option("--emulate", type=click.Choice(list(BOARDS)), help="Serve an emulated board from this machine (qemu).")
def serve_device_command(host: str | None, port: int, tracker: str | None, key: str, emulate: str | None) -> None:
    """Serve this board (or an emulated one) over TVM RPC until Ctrl-C.

    On the board only TVM's runtime is needed, not mptc's compiler: install the aarch64 wheels
    and drop the compiler library (the emulator's set-up does the same):

    \b
      pip install apache-tvm==0.27.0.post1 apache-tvm-ffi numpy ml_dtypes cloudpickle psutil
      rm "$(python -c 'import tvm, os; print(os.path.dirname(tvm.__file__))')/lib/libtvm_compiler.so"
      export TVM_USE_RUNTIME_LIB=1
      python -m tvm.exec.rpc_server --host 0.0.0.0 --port 9090      # the same server, without mptc

    Use the same apache-tvm-ffi version as the machine that compiles. Then, from that machine:
    mptc profile OUT --rpc BOARD_IP:9090. (Each profile first checks the server with a probe key;
    the server logs it as "mismatch key": harmless.)

    \b
    Examples:
      mptc serve-device                                   # on the board itself
      mptc serve-device --tracker 10.0.0.2:9190 --key rpi4
      mptc serve-device --emulate rpi5 --port 9095        # an emulated Pi 5 on this machine
    """
    from mptc.deploy.emulator import emulated_board
    from mptc.deploy.server import RpcServer

    if tracker and not key:
        raise click.UsageError("--tracker needs --key (the kind of board, e.g. rpi4)")
    if emulate:
        server = emulated_board(
            emulate, host=host or "127.0.0.1", port=port, tracker=tracker, key=key, capture_log=False
        )
        what = f"an emulated {BOARDS[emulate].description} (set up by {SETUP_SCRIPT})"
    else:
        server = RpcServer(
            [sys.executable], host=host or "0.0.0.0", port=port, tracker=tracker, key=key, capture_log=False
        )
        what = "this machine"
    # SIGTERM must unwind the `with` below, or the server's process group would outlive us.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        with server:
            where = f"tracker {tracker}, key {key}" if tracker else f"mptc profile OUT --rpc {server.address}"
            click.echo(f"serving {what} at {server.address} ({where}); Ctrl-C stops", err=True)
            code = server.wait()
    except KeyboardInterrupt:
        click.echo("stopped", err=True)
        return
    raise DeviceError(
        f"the RPC server at {server.address} stopped (exit code {code}); the log above says why "
        "(an illegal instruction / SIGILL means a module used an instruction this CPU lacks)"
    )
