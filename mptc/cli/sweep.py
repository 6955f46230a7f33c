"""``mptc sweep``: train -> export -> optimize -> compile -> profile at several sparsities, with a report."""

from __future__ import annotations

from pathlib import Path

import click

from mptc.cli.options import (
    activations_option,
    board_option,
    emulate_option,
    key_option,
    out_option,
    rpc_option,
    target_option,
    tracker_option,
)
from mptc.cli.progress import StageBar, bar, echo
from mptc.config import METHODS, MODELS, PRETRAINED_METHODS, TrainConfig
from mptc.deploy.settings import MAX_REPEAT, check_device_options


def _sparsities(_ctx, _param, value: str) -> list[float]:
    try:
        values = [float(part) for part in value.split(",") if part.strip()]
    except ValueError as error:
        raise click.BadParameter(f"expected comma-separated fractions like 0.5,0.9, got {value!r}") from error
    if not values or any(not 0.0 <= v < 1.0 for v in values):
        raise click.BadParameter(f"every sparsity is a fraction pruned in [0, 1), got {value!r}")
    return sorted(set(values))


@click.command("sweep")
@click.option("--model", type=click.Choice(MODELS), default="mlp", show_default=True, help="Architecture.")
@click.option(
    "--method",
    type=click.Choice([m for m in METHODS if m != "dense" and m not in PRETRAINED_METHODS]),
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
@target_option(default="x86")
@board_option()
@rpc_option()
@tracker_option()
@key_option()
@emulate_option("Profile on an emulated board started here (latency labelled emulated).")
@click.option(
    "--repeat",
    type=click.IntRange(1, MAX_REPEAT),
    default=30,
    show_default=True,
    help="Timed runs per point (the median is reported).",
)
@activations_option(
    "512 training samples (the report adds the quantized model's accuracy and onnxruntime's static INT8 latency)"
)
@out_option("Report folder; finished points in it are reused.", folder=True)
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
    activations: str,
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
      mptc sweep --activations int8 --sparsity 0.1,0.5,0.9 -o runs/sweep-int8
      mptc sweep --target arm --board rpi4 --emulate rpi4 -o runs/sweep-rpi4
      mptc sweep --target arm --board rpi4 --rpc 192.168.1.20:9090 -o runs/sweep-pi
    """
    from mptc.pipeline import STAGES, DeviceOptions
    from mptc.report.sweep import sweep

    try:
        config = TrainConfig(sparsity=sparsities[0], **train_options)
    except ValueError as error:
        raise click.UsageError(str(error)) from error
    _check_device(target, board, rpc, tracker, key, emulate)  # before any ticket is trained
    device = DeviceOptions(
        target=target,
        board=board,
        rpc=rpc,
        tracker=tracker,
        key=key,
        emulate=emulate,
        repeat=repeat,
        activations=activations,
    )

    with (
        bar(total=len(sparsities), unit="point", desc="sweep") as points,
        StageBar(STAGES, title=f"sparsity {sparsities[0]:g}", position=1, leave=False) as stages,
    ):

        def show(point: dict) -> None:
            points.update(1)
            if points.n < len(sparsities):
                stages.restart(f"sparsity {sparsities[points.n]:g}")
            else:
                points.set_description_str("sweep: report")
            echo(
                f"sparsity {point['sparsity']:.2f}: accuracy {point['accuracy']['pytorch']:.4f} (module "
                f"{'n/a' if point['accuracy']['module'] is None else format(point['accuracy']['module'], '.4f')}), "
                f"{point['latency_ms']['module']['median']:.4f} ms{' (emulated)' if point['emulated'] else ''} vs onnxruntime fp32 "
                f"{point['latency_ms']['onnxruntime_fp32']['median']:.4f} ms"
                + (
                    f", onnxruntime int8 {point['latency_ms']['onnxruntime_int8']['median']:.4f} ms"
                    if "onnxruntime_int8" in point["latency_ms"]
                    else ""
                )
                + f", packed {point['sizes']['packed_onnx_bytes']:,} B"
            )

        sweep(config, sparsities, out, device, on_point=show, on_stage=stages)
    click.echo(f"report: {out / 'report.md'} (and report.json, latency.png, accuracy.png, size.png)")


def _check_device(
    target: str, board: str | None, rpc: str | None, tracker: str | None, key: str | None, emulate: str | None
) -> None:
    """Refuse device options that cannot go together, as compile and profile would, but before the
    first ticket is trained rather than after it."""
    from mptc.targets.target import resolve_target  # deferred: it imports TVM

    resolved = resolve_target(target, board)  # e.g. --board rpi4 with --target x86: exit 4, as `mptc compile`
    check_device_options(rpc, tracker, key)
    if emulate is not None and resolved.family != "arm":
        raise click.UsageError(
            f"--emulate {emulate} runs aarch64 CPU modules: use --target arm (--target {target} builds a module it cannot run)"
        )
    cpu = resolved.spec.get("host", resolved.spec) if resolved.family == "cuda" else resolved.spec
    if str(cpu.get("mtriple", "")).startswith("aarch64") and rpc is None and tracker is None and emulate is None:
        where = f"board {resolved.board}" if resolved.board else "an aarch64 board"
        raise click.UsageError(
            f"--target {target} builds a module for {where}, which cannot run on this host: "
            "give --rpc, --tracker/--key or --emulate"
        )
