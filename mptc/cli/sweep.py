"""``mptc sweep``: train -> export -> optimize -> compile -> profile at several sparsities, with a report."""

from __future__ import annotations

from pathlib import Path

import click

from mptc.boards import BOARDS, TARGETS
from mptc.models import METHODS, MODELS


def _sparsities(_ctx, _param, value: str) -> list[float]:
    try:
        values = [float(part) for part in value.split(",") if part.strip()]
    except ValueError as error:
        raise click.BadParameter(f"expected comma-separated fractions like 0.5,0.9, got {value!r}") from error
    if not values or any(not 0.0 <= v < 1.0 for v in values):
        raise click.BadParameter(f"every sparsity is a fraction pruned in [0, 1), got {value!r}")
    return sorted(set(values))


@click.command("sweep")
@click.option("--model", type=click.Choice(list(MODELS)), default="mlp", show_default=True, help="Architecture.")
@click.option(
    "--method",
    type=click.Choice([m for m in METHODS if m not in ("dense", "jackpot", "magnitude")]),
    default="biprop",
    show_default=True,
    help="Mask-search method.",
)
@click.option("--binary-act", is_flag=True, help="MPT-1/1: binary activations.")
@click.option(
    "--sparsity",
    "sparsities",
    default="0.5,0.7,0.9",
    show_default=True,
    callback=_sparsities,
    help="Comma-separated fractions pruned, one ticket each.",
)
@click.option("--dataset", default="digits", show_default=True, help="Data set (see mptc train --help).")
@click.option("--width", type=float, default=1.0, show_default=True, help="Width multiplier.")
@click.option("--epochs", type=int, default=None, help="Epochs per ticket [default: the recipe's].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every ticket.")
@click.option("--target", type=click.Choice(TARGETS), default="x86", show_default=True, help="Compile target.")
@click.option("--board", type=click.Choice(list(BOARDS)), default=None, help="Board the arm/cuda module is built for.")
@click.option(
    "--rpc",
    default=None,
    metavar="HOST:PORT",
    help="Profile on a TVM RPC server (e.g. `mptc serve-device` on the board).",
)
@click.option(
    "--tracker", default=None, metavar="HOST:PORT", help="Profile on a board from a TVM RPC tracker (with --key)."
)
@click.option("--key", default=None, help="Tracker key of the board kind, e.g. rpi4.")
@click.option(
    "--emulate",
    type=click.Choice(list(BOARDS)),
    default=None,
    help="Profile on an emulated board started here (latency labelled emulated).",
)
@click.option(
    "--repeat",
    type=click.IntRange(1),
    default=30,
    show_default=True,
    help="Timed runs per point (the median is reported).",
)
@click.option(
    "-o",
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Report folder; finished points in it are reused.",
)
def sweep_command(
    out: Path,
    sparsities: list[float],
    target: str,
    board: str | None,
    rpc: str | None,
    tracker: str | None,
    key: str | None,
    emulate: str | None,
    repeat: int,
    **train_options,
) -> None:
    """Compare accuracy, latency and size across sparsity levels, end to end.

    For each sparsity: train a ticket (or reuse it), export it to ONNX, pack it, compile it
    for the target, run it on the device (here, over RPC, or on an emulated board), and
    measure accuracy at every stage and latency against onnxruntime fp32 on the same model.
    Writes OUT/report.json, OUT/report.md, and latency.png, accuracy.png and size.png.

    \b
    Examples:
      mptc sweep -o runs/sweep
      mptc sweep --binary-act --sparsity 0.5,0.7,0.9,0.95 -o runs/sweep-11
      mptc sweep --target arm --board rpi4 --emulate rpi4 -o runs/sweep-rpi4
      mptc sweep --target arm --board rpi4 --rpc 192.168.1.20:9090 -o runs/sweep-pi
    """
    from mptc.config import TrainConfig
    from mptc.pipeline import DeviceOptions
    from mptc.report.sweep import sweep

    try:
        config = TrainConfig(sparsity=sparsities[0], **train_options)
    except ValueError as error:
        raise click.UsageError(str(error)) from error
    device = DeviceOptions(
        target=target, board=board, rpc=rpc, tracker=tracker, key=key, emulate=emulate, repeat=repeat
    )

    def show(point: dict) -> None:
        click.echo(
            f"sparsity {point['sparsity']:.2f}: accuracy {point['accuracy']['pytorch']:.4f} (module "
            f"{'n/a' if point['accuracy']['module'] is None else format(point['accuracy']['module'], '.4f')}), "
            f"{point['latency_ms']['module']['median']:.4f} ms{' (emulated)' if point['emulated'] else ''} vs onnxruntime fp32 "
            f"{point['latency_ms']['onnxruntime_fp32']['median']:.4f} ms, packed {point['sizes']['packed_onnx_bytes']:,} B"
        )

    sweep(config, sparsities, out, device, on_point=show)
    click.echo(f"report: {out / 'report.md'} (and report.json, latency.png, accuracy.png, size.png)")
