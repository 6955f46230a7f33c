"""``mptc approximate``: a thin click command over :func:`mptc.approximate.approximate`."""

from __future__ import annotations

from pathlib import Path

import click

from mptc.cli.options import out_option
from mptc.config import ROUTES


def _factors(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError as error:
        raise click.UsageError(f"--width-factor takes comma-separated numbers such as 1,2,4,8, got {text!r}") from error


@click.command("approximate")
@click.argument("target_run", type=click.Path(path_type=Path))
@click.option(
    "--route",
    type=click.Choice(ROUTES),
    default="distill",
    show_default=True,
    help="distill: learn a mask over a signed-constant network matching the target's logits; "
    "construct: build it exactly on the target's integer form (split, ladder, combine layers).",
)
@click.option(
    "--width-factor",
    default="1,2,4,8",
    show_default=True,
    help="Comma-separated width factors (distill: x the target's hidden widths; construct: 3x copies per lane).",
)
@click.option("--depth-factor", type=int, default=1, show_default=True, help="distill: layers per target hidden layer.")
@click.option(
    "--precision",
    type=int,
    default=8,
    show_default=True,
    help="construct: bits P of the integer form (error ~2^-P, depth 1 + l P).",
)
@click.option("--epochs", type=int, default=20, show_default=True, help="distill: training epochs per width.")
@click.option(
    "--random-inputs",
    type=float,
    default=0.0,
    show_default=True,
    help="distill: Gaussian inputs per training input in each batch (matching off the data too).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random +-1 network.")
@out_option("Folder for approximation.json/.md/.png.", folder=True)
def approximate_command(
    target_run: Path,
    route: str,
    width_factor: str,
    depth_factor: int,
    precision: int,
    epochs: int,
    random_inputs: float,
    seed: int,
    out: Path,
) -> None:
    """Approximate a trained dense MLP with tickets in random +-1 networks, error vs width.

    TARGET_RUN is a `mptc train --model mlp --method dense` run directory. For each width factor
    a ticket is found and compared with the target on the test split (mean and max distance
    of the logits, argmax agreement).

    \b
    Examples:
      mptc approximate runs/mlp-dense --width-factor 1,2,4,8 -o runs/approx
      mptc approximate runs/mlp-dense --route construct --width-factor 1,2,4 --precision 8 -o runs/approx-c
    """
    from mptc.approximate.sweep import ApproximateConfig, approximate, markdown_table

    try:
        config = ApproximateConfig(
            route=route,
            width_factors=_factors(width_factor),
            depth_factor=depth_factor,
            precision=precision,
            epochs=epochs,
            random_inputs=random_inputs,
            seed=seed,
        )
    except ValueError as error:
        raise click.UsageError(str(error)) from error
    report = approximate(target_run, config, out)
    click.echo(markdown_table(report["rows"], report["target_test_accuracy"], config), nl=False)
    click.echo(f"report written to {out}")
