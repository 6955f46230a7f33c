"""``mptc train`` and ``mptc eval``: thin click commands over :func:`mptc.train.loop.train`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from mptc.cli.options import out_option
from mptc.cli.progress import bar
from mptc.config import DATASETS, DEVICES, INITS, METHODS, MODELS, OPTIMIZERS, TrainConfig, is_import_path
from mptc.errors import InputError


def _config_from_options(options: dict) -> TrainConfig:
    if options["binary_act_before"]:
        options["binary_act"] = True
    try:
        return TrainConfig(**options)
    except ValueError as error:
        raise click.UsageError(str(error)) from error


class ModelChoice(click.ParamType):
    """A zoo model (listed as click lists choices) or a user's ``package.module:Factory``."""

    name = "model"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:  # ctx: click >= 8.2
        return f"[{'|'.join(MODELS)}|PACKAGE.MODULE:FACTORY]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        if value in MODELS or is_import_path(value):
            return str(value)
        self.fail(
            f"{value!r} is neither one of {', '.join(MODELS)} nor an import path PACKAGE.MODULE:FACTORY", param, ctx
        )


def _json_object(ctx: click.Context, param: click.Parameter, value: str | None) -> dict[str, Any]:
    if value is None:
        return {}
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as error:
        raise click.BadParameter(f"not JSON ({error.msg}): {value!r}") from error
    if not isinstance(parsed, dict):
        raise click.BadParameter(f"expected a JSON object such as '{{\"num_classes\": 10}}', got {value!r}")
    return parsed


def parse_input_shape(text: str) -> tuple[int, ...]:
    """``CxHxW`` (one sample, any rank up to 3) or ``NxCxHxW``, whose batch ``N`` (a number or
    the letter N) is dropped: the export takes any batch."""
    parts = text.lower().replace(",", "x").split("x")
    if parts and parts[0] == "n":
        parts = parts[1:]
    try:
        shape = tuple(int(part) for part in parts)
    except ValueError:
        raise click.BadParameter(f"write it as CxHxW or NxCxHxW, e.g. 3x224x224; got {text!r}") from None
    if len(shape) == 4:
        shape = shape[1:]
    if not 1 <= len(shape) <= 3 or min(shape) < 1:
        raise click.BadParameter(f"expected 1 to 3 positive dimensions per sample (CxHxW), got {text!r}")
    return shape


def _input_shape(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    return None if value is None else parse_input_shape(value)


class EpochBar:
    """A tqdm bar over epochs showing loss and accuracy; silent when stderr is not a terminal."""

    def __init__(self, total: int, initial: int = 0) -> None:
        self.bar = bar(total=total, initial=initial, unit="epoch")

    def __call__(self, record: dict) -> None:
        self.bar.set_postfix(
            loss=f"{record['train_loss']:.3f}",
            train=f"{record['train_accuracy']:.3f}",
            test=f"{record['test_accuracy']:.3f}",
        )
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def summary_line(metrics: dict) -> str:
    """One line a person reads after training: accuracy, sparsity both ways, size."""
    return (
        f"{metrics['model']} {metrics['method']}{' (binary activations)' if metrics['binary_act'] else ''} "
        f"on {metrics['dataset']}: test accuracy {metrics['test_accuracy']:.4f}, "
        f"sparsity {metrics['sparsity']:.3f} (kept {metrics['kept_fraction']:.3f}), "
        f"ticket {metrics['ticket_bytes']:,} bytes vs fp32 {metrics['fp32_bytes']:,} bytes "
        f"({metrics['fp32_bytes'] / max(metrics['ticket_bytes'], 1):.1f}x smaller), "
        f"{metrics['train_seconds']:.1f} s"
    )


def jackpot_line(metrics: dict) -> str:
    """The baseline every jackpot is read against: pre-trained and magnitude-pruned accuracy."""
    report = metrics["jackpot"]
    if metrics["method"] == "magnitude":
        search = "no search"
    elif report["restriction"]["on"]:
        search = f"short restriction from rate {report['restriction']['initial_rate']:g} (cosine)"
    else:
        search = "no restriction"
    return (
        f"pre-trained {report['pretrained_test_accuracy']:.4f}, magnitude pruning {report['magnitude_test_accuracy']:.4f} "
        f"({report['magnitude_recalibrated_test_accuracy']:.4f} with BatchNorm re-estimated) "
        f"at the same per-layer sparsity, mask overlap with magnitude {report['mask_overlap']:.3f}, "
        f"classifier {report['classifier']}, {search}"
    )


@click.command()
@click.option(
    "--model",
    type=ModelChoice(),
    default="mlp",
    show_default=True,
    help="A zoo architecture, or your own model as PACKAGE.MODULE:FACTORY (an nn.Module class or a function "
    "returning one, importable here), whose every Conv2d/Linear is masked.",
)
@click.option(
    "--model-args",
    metavar="JSON",
    callback=_json_object,
    help="Keyword arguments of --model FACTORY, a JSON object, e.g. '{\"num_classes\": 10}'.",
)
@click.option(
    "--input-shape",
    metavar="CxHxW",
    callback=_input_shape,
    help="One sample's shape (NxCxHxW: N is dropped). Checked against --dataset; gives plain "
    "--dataset synthetic its shape.",
)
@click.option(
    "--method",
    type=click.Choice(METHODS),
    default="biprop",
    show_default=True,
    help="edge-popup: mask over random weights; biprop: MPT-1/32 ternary {-a,0,+a} weights; dense: ordinary training; "
    "jackpot: mask searched inside --pretrained; magnitude: one-shot magnitude pruning of --pretrained.",
)
@click.option(
    "--sparsity",
    type=float,
    default=0.5,
    show_default=True,
    help="Fraction of weights PRUNED in each masked layer, in [0, 1) (jackpot/magnitude: over all masked layers, split by one global magnitude threshold).",
)
@click.option(
    "--binary-act", is_flag=True, help="Binary sign activations (MPT-1/1 with --method biprop); the input stays real."
)
@click.option(
    "--binary-act-before",
    metavar="PATTERN",
    multiple=True,
    help="--model FACTORY: put a binary activation in front of the masked layers whose names match this glob "
    "(repeatable; implies --binary-act) [default: every masked layer but the first].",
)
@click.option(
    "--binarize", is_flag=True, help="Ternary alpha*sign(W)*mask weights for mask-search methods other than biprop."
)
@click.option(
    "--init",
    type=click.Choice(INITS),
    default=None,
    help="Random weight init [default: signed-constant for edge-popup, else kaiming-normal].",
)
@click.option("--width", type=float, default=1.0, show_default=True, help="Width multiplier on every layer.")
@click.option(
    "--dense-first", is_flag=True, help="Keep the first layer an ordinary full-precision layer (BNN practice)."
)
@click.option(
    "--dense-last",
    is_flag=True,
    help="Keep the classifier an ordinary full-precision layer (jackpot: keep it dense and unpruned).",
)
@click.option(
    "--per-channel-alpha", is_flag=True, help="One alpha per output channel instead of per layer (free at inference)."
)
@click.option("--learn-bn", is_flag=True, help="Train BatchNorm affine parameters along with the scores.")
@click.option(
    "--dataset", default="digits", show_default=True, help=f"One of: {', '.join(DATASETS)}. Nothing is downloaded."
)
@click.option(
    "--epochs", type=int, default=None, help="Epochs [default: from the recipe, 30-40 on digits, 100 on CIFAR]."
)
@click.option("--batch-size", type=int, default=None, help="Batch size [default: 64 on digits, 128-256 on CIFAR].")
@click.option("--lr", type=float, default=None, help="Learning rate [default: from the recipe].")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default=None, help="Optimizer [default: from the recipe].")
@click.option(
    "--weight-decay",
    type=float,
    default=None,
    help="Weight decay on the trained parameters [default: from the recipe].",
)
@click.option(
    "--momentum", type=float, default=None, help="SGD momentum [default: 0.875 on imagefolder data, else 0.9]."
)
@click.option(
    "--label-smoothing",
    type=float,
    default=None,
    help="Label smoothing of the cross-entropy [default: 0.1 on imagefolder data, else 0].",
)
@click.option(
    "--warmup-epochs",
    type=int,
    default=None,
    help="Epochs of linear learning-rate warm-up before the cosine schedule [default: 5 on imagefolder data, else 0].",
)
@click.option(
    "--pretrained",
    default=None,
    help="jackpot/magnitude: a --method dense run directory (or its ticket, or a safetensors state dict) to search "
    "in. --model FACTORY: its state dict (.safetensors, or .pt read with weights_only), searched in by a jackpot, "
    "else the frozen weights under the mask instead of random ones; the ticket records its sha256.",
)
@click.option(
    "--restriction/--no-restriction",
    default=True,
    show_default=True,
    help="jackpot: bound the mask swaps per step (short restriction).",
)
@click.option(
    "--restriction-rate",
    type=float,
    default=1.0,
    show_default=True,
    help="jackpot: fraction of candidate swaps applied at the first step, cosine-decayed to 0.",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed of the random weights, scores and data order."
)
@click.option("--device", type=click.Choice(DEVICES), default="cpu", show_default=True, help="Where to train.")
@out_option("Run directory to create (or continue with --resume).", folder=True)
@click.option("--resume", is_flag=True, help="Continue an interrupted run in OUT from its last finished epoch.")
def train(out: Path, resume: bool, **options) -> None:
    """Learn a strong lottery ticket: a mask over frozen random (or, for a jackpot, pre-trained) weights.

    Writes OUT/ticket.safetensors (seed + packed mask bits + alpha), OUT/config.json,
    OUT/metrics.json and a checkpoint each epoch, all atomically. An interrupted run continues
    with --resume and ends exactly as an uninterrupted one.

    \b
    Examples:
      mptc train --model mlp --method biprop --sparsity 0.5 -o runs/mlp-mpt
      mptc train --model mlp --method biprop --binary-act -o runs/mlp-mpt11
      mptc train --model resnet18 --dataset cifar10:~/data/cifar-10-batches-py --device cuda -o runs/r18
      mptc train --method dense -o runs/mlp-dense
      mptc train --method jackpot --pretrained runs/mlp-dense --sparsity 0.9 -o runs/mlp-jackpot

    \b
    Your own model (every Conv2d/Linear masked; the ticket records the import path, the
    arguments and the sha256 of --pretrained weights):
      mptc train --model my_pkg.nets:Net --model-args '{"width": 32}' --dataset synthetic \\
          --input-shape 3x32x32 --method biprop --sparsity 0.8 -o runs/net
      mptc train --model torchvision.models:resnet18 --model-args '{"num_classes": 10}' \\
          --dataset imagefolder:~/data/imagenette --method jackpot --pretrained r18.safetensors \\
          --sparsity 0.9 -o runs/r18-jackpot
    """
    import mptc.jackpot  # noqa: F401  (registers the jackpot methods' training hooks)
    from mptc.train.config import resolve
    from mptc.train.loop import train as run_training

    config = _config_from_options(options)
    bar = EpochBar(total=resolve(config).epochs)
    try:
        result = run_training(config, out, resume=resume, on_epoch=bar)
    finally:
        bar.close()
    if not result.metrics:
        return  # a torchrun worker other than rank 0: rank 0 reports the run
    click.echo(summary_line(result.metrics))
    if "jackpot" in result.metrics:
        click.echo(jackpot_line(result.metrics))
    click.echo(f"run written to {result.run_dir}")


@click.command("eval")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--dataset", default=None, help="Evaluate on another data set of the same input shape [default: the run's]."
)
def evaluate(run_dir: Path, dataset: str | None) -> None:
    """Re-evaluate a run's ticket (rebuilt from seed + mask bits) on its test split.

    \b
    Example:
      mptc eval runs/mlp-mpt
    """
    from mptc.evaluate import evaluate_run

    if not run_dir.is_dir():
        raise InputError(f"run directory {run_dir} does not exist")
    result = evaluate_run(run_dir, dataset)
    click.echo(
        f"{result['dataset']}: test accuracy {result['test_accuracy']:.4f} on {result['samples']} samples (loss {result['test_loss']:.4f})"
    )
