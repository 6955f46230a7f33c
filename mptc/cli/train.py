"""``mptc train`` and ``mptc eval``: thin click commands over :func:`mptc.train.loop.train`."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from tqdm import tqdm

from mptc.config import OPTIMIZERS, TrainConfig
from mptc.data import DATASETS
from mptc.errors import InputError
from mptc.models import METHODS, MODELS
from mptc.nn.init import INITS


def _config_from_options(options: dict) -> TrainConfig:
    try:
        return TrainConfig(**options)
    except ValueError as error:
        raise click.UsageError(str(error)) from error


class EpochBar:
    """A tqdm bar over epochs showing loss and accuracy; silent when stderr is not a terminal."""

    def __init__(self, total: int, initial: int = 0) -> None:
        self.bar = tqdm(total=total, initial=initial, unit="epoch", disable=not sys.stderr.isatty(), dynamic_ncols=True)

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
@click.option("--model", type=click.Choice(list(MODELS)), default="mlp", show_default=True, help="Architecture.")
@click.option(
    "--method",
    type=click.Choice(list(METHODS)),
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
    "--binarize", is_flag=True, help="Ternary alpha*sign(W)*mask weights for mask-search methods other than biprop."
)
@click.option(
    "--init",
    type=click.Choice(list(INITS)),
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
@click.option(
    "--optimizer", type=click.Choice(list(OPTIMIZERS)), default=None, help="Optimizer [default: from the recipe]."
)
@click.option(
    "--weight-decay",
    type=float,
    default=None,
    help="Weight decay on the trained parameters [default: from the recipe].",
)
@click.option(
    "--pretrained",
    default=None,
    help="jackpot/magnitude: a --method dense run directory (or its ticket, or a safetensors state dict) to search in.",
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
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True, help="Where to train.")
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Run directory to create (or continue with --resume).",
)
@click.option("--resume", is_flag=True, help="Continue an interrupted run in --out from its last finished epoch.")
def train(out: Path, resume: bool, **options) -> None:
    """Learn a strong lottery ticket: a mask over frozen random (or, for a jackpot, pre-trained) weights.

    Writes OUT/ticket.safetensors (seed + packed mask bits + alpha), OUT/config.json,
    OUT/metrics.json and a checkpoint each epoch, all atomically. An interrupted run continues
    with --resume and ends exactly as an uninterrupted one.

    \b
    Examples:
      mptc train --model mlp --method biprop --sparsity 0.5 --out runs/mlp-mpt
      mptc train --model mlp --method biprop --binary-act --out runs/mlp-mpt11
      mptc train --model resnet18 --dataset cifar10:~/data/cifar-10-batches-py --device cuda --out runs/r18
      mptc train --method dense --out runs/mlp-dense
      mptc train --method jackpot --pretrained runs/mlp-dense --sparsity 0.9 --out runs/mlp-jackpot
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
