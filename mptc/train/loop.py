"""``train()``: learn a mask (or dense weights) and write a resumable run directory.

Determinism is by construction: weights come from (seed, name), the shuffle of epoch ``e`` from
(seed, "epoch", e), the global torch RNG that a user's model may draw from in training (dropout)
is seeded from (seed, "forward", e) for the epoch and restored after, and the checkpoint after each
epoch holds all remaining state, so a run resumed from any epoch boundary ends bit-identical to an
uninterrupted one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mptc import __version__
from mptc.config import PRETRAINED_METHODS, TrainConfig, is_import_path, parse_config
from mptc.data import Dataset, DataSplit, augment_batch, load_dataset
from mptc.data.base import batch_starts
from mptc.errors import InputError, OutputError, UnsupportedError, VerificationError
from mptc.io import write_json, write_text
from mptc.models.build import build_from_config
from mptc.models.weights import read_state_dict, state_sha256
from mptc.nn.init import derive_seed, generator
from mptc.nn.layers import masked_layers
from mptc.ticket import fp32_bytes, save_ticket
from mptc.train.checkpoint import restore, save_checkpoint
from mptc.train.config import resolve
from mptc.train.distributed import World, join
from mptc.train.hooks import SearchHooks, hooks_for
from mptc.train.rundir import RunDir, exclusive

log = logging.getLogger(__name__)
EVAL_BATCH = 1024
MIN_TRAIN_BATCH = 2  # a last training batch of one sample joins the one before (BatchNorm)

EpochCallback = Callable[[dict[str, Any]], None]


@dataclass
class TrainResult:
    config: TrainConfig
    run_dir: Path
    metrics: dict[str, Any] = field(default_factory=dict)
    model: nn.Module | None = None


def select_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UnsupportedError("--device cuda asked for, but this torch build sees no CUDA GPU")
    return torch.device(name)


@torch.no_grad()
def evaluate(model: nn.Module, split: DataSplit, device: torch.device | str = "cpu") -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of ``model`` on ``split``."""
    model.eval()
    correct, loss_sum = 0, 0.0
    for x, y in split.batches(EVAL_BATCH):
        logits = model(x.to(device))
        loss_sum += float(nn.functional.cross_entropy(logits, y.to(device), reduction="sum"))
        correct += int((logits.argmax(1).cpu() == y).sum())
    return correct / len(split), loss_sum / len(split)


def make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def build(config: TrainConfig, dataset: Dataset, weights: Mapping[str, torch.Tensor] | None = None) -> nn.Module:
    """The model of ``config`` with its seeded initial weights and scores, or, for a user's model
    trained over pre-trained ``weights`` (any method but the jackpots, whose hooks load them),
    those weights and seeded scores."""
    return build_from_config(
        config, dataset.input_shape, dataset.num_classes, weights, source=f"--pretrained {config.pretrained}"
    )


def user_pretrained(config: TrainConfig) -> tuple[TrainConfig, dict[str, torch.Tensor] | None]:
    """A user's model's pre-trained weights, and ``config`` with their content hash filled in.

    Raises:
        InputError: the weights cannot be read, or ``config.pretrained_sha256`` names other
            weights (both hashes are given).
    """
    if not is_import_path(config.model) or config.pretrained is None:
        return config, None
    state = read_state_dict(config.pretrained)
    digest = state_sha256(state)
    if config.pretrained_sha256 is not None and config.pretrained_sha256 != digest:
        raise InputError(
            f"--pretrained {config.pretrained} holds weights of sha256 {digest}, "
            f"but this run needs the weights of sha256 {config.pretrained_sha256}"
        )
    return dataclasses.replace(config, pretrained_sha256=digest), state


def warmup_cosine(epoch: int, warmup: int, epochs: int) -> float:
    """The learning-rate factor of ``epoch`` (from 0): ``(e + 1) / (W + 1)`` for the ``W`` warm-up
    epochs, then ``(1 + cos(pi (e - W) / (E - W))) / 2``, the cosine schedule over the rest."""
    if epoch < warmup:
        return (epoch + 1) / (warmup + 1)
    return 0.5 * (1.0 + math.cos(math.pi * (epoch - warmup) / max(epochs - warmup, 1)))


def make_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    """Cosine annealing over the run, after ``config.warmup_epochs`` of linear warm-up."""
    if not config.warmup_epochs:
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    warmup, epochs = config.warmup_epochs, config.epochs
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: warmup_cosine(epoch, warmup, epochs))


def _check_resume_config(run: RunDir, config: TrainConfig) -> None:
    if not run.config.is_file():
        raise InputError(f"{run.root} has no config.json: not a run directory that can be resumed")
    # Resolved again: a config.json written before a field existed reads back that field's default.
    stored = resolve(parse_config(run.config.read_bytes(), str(run.config)))
    if stored.pretrained_sha256 != config.pretrained_sha256:
        raise InputError(
            f"{run.root} was started on pre-trained weights of sha256 {stored.pretrained_sha256}; "
            f"--pretrained {config.pretrained} now holds sha256 {config.pretrained_sha256}"
        )
    diffs = [k for k, v in stored.to_json().items() if k not in ("epochs", "device") and config.to_json()[k] != v]
    if diffs:
        raise InputError(
            f"{run.root} was started with different settings ({', '.join(diffs)}); resume it without changing them"
        )


def layer_summary(model: nn.Module) -> list[dict[str, Any]]:
    """Per masked layer: name, shape, kept count, sparsity and alpha (mean if per channel)."""
    rows = []
    for name, layer in masked_layers(model):
        alpha = layer.alpha().detach()
        rows.append(
            {
                "layer": name,
                "shape": list(layer.weight.shape),
                "kept": layer.kept,
                "sparsity": 1.0 - layer.kept / layer.weight.numel(),
                "alpha": float(alpha.mean()),
            }
        )
    return rows


def overall_sparsity(model: nn.Module) -> float:
    """Fraction pruned over all masked layers' weights (0 for a dense model)."""
    layers = [layer for _, layer in masked_layers(model)]
    total = sum(layer.weight.numel() for layer in layers)
    return 1.0 - sum(layer.kept for layer in layers) / total if total else 0.0


def train(
    config: TrainConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    on_epoch: EpochCallback | None = None,
    hooks: SearchHooks | None = None,
) -> TrainResult:
    """Train ``config`` into ``run_dir`` (created), or continue it with ``resume``.

    Args:
        on_epoch: called with each epoch's record (progress display).
        hooks: method-specific steps (default :func:`~mptc.train.hooks.hooks_for` the method:
            e.g. a jackpot loads pre-trained weights and magnitude scores, freezes BatchNorm and
            applies the short restriction after each step); must be deterministic.
    """
    config, weights = user_pretrained(resolve(config))
    root = Path(run_dir)
    # only the first process writes the folder (the others of a torchrun share it)
    with exclusive(root) if int(os.environ.get("RANK", "0")) == 0 else contextlib.nullcontext():
        return _train_into(config, _open_run_dir(root, config, resume), resume, on_epoch, hooks, weights)


def _train_into(
    config: TrainConfig,
    run: RunDir,
    resume: bool,
    on_epoch: EpochCallback | None,
    hooks: SearchHooks | None,
    weights: Mapping[str, torch.Tensor] | None,
) -> TrainResult:
    """:func:`train`'s phases, in a run folder this process holds."""
    state = _set_up(config, run, hooks, weights)
    history, start = _resume_or_start(state, resume)
    trainer = state.world.wrap(state.model)  # after the restore: DDP broadcasts rank 0's weights as it wraps
    for epoch in range(start, config.epochs):
        record = _train_epoch(state, trainer, epoch)
        history.append(record)
        if state.world.is_main:
            _save_epoch(state, epoch, history)
        if on_epoch is not None:
            on_epoch(record)
    return _finish(state, history)


@dataclass(frozen=True)
class _Training:
    """What every phase of :func:`train` works on, built once by :func:`_set_up`."""

    config: TrainConfig
    run: RunDir
    world: World
    dataset: Dataset
    model: nn.Module
    hooks: SearchHooks
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    criterion: nn.Module


def _open_run_dir(root: Path, config: TrainConfig, resume: bool) -> RunDir:
    """The run directory, refused before any work if it cannot be (re)used as asked."""
    run = RunDir(root)
    if resume:
        _check_resume_config(run, config)
    elif run.has_run():
        raise OutputError(f"{run.root} already holds a run; pass --resume to continue it or choose another --out")
    return run


def _set_up(
    config: TrainConfig, run: RunDir, hooks: SearchHooks | None, weights: Mapping[str, torch.Tensor] | None
) -> _Training:
    """Join the processes, load the data, build the seeded model, its optimizer and schedule."""
    world = join(select_device(config.device))
    dataset = load_dataset(config.dataset)
    if config.input_shape is not None and tuple(dataset.input_shape) != config.input_shape:
        raise InputError(
            f"dataset {dataset.name} gives inputs of shape {tuple(dataset.input_shape)}, "
            f"not the --input-shape {'x'.join(map(str, config.input_shape))} of this run"
        )
    model = build(config, dataset, weights if config.method not in PRETRAINED_METHODS else None)
    hooks = hooks if hooks is not None else hooks_for(config)
    hooks.prepare(model, dataset)
    model.to(world.device)
    optimizer = make_optimizer(config, model)
    scheduler = make_scheduler(config, optimizer)
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing or 0.0)
    return _Training(config, run, world, dataset, model, hooks, optimizer, scheduler, criterion)


def _resume_or_start(state: _Training, resume: bool) -> tuple[list[dict[str, Any]], int]:
    """(history, epochs done): restored from the checkpoint, or none after writing config.json."""
    if resume and state.run.checkpoint.exists():
        history, start = restore(
            state.run.checkpoint, state.model, state.optimizer, state.scheduler, state.config.epochs
        )
        log.info("resuming %s after epoch %d", state.run.root, start)
        return history, start
    if state.world.is_main:
        write_text(state.run.config, state.config.dumps() + "\n")
    return [], 0


def _train_epoch(state: _Training, trainer: nn.Module, epoch: int) -> dict[str, Any]:
    """One epoch in the order drawn from (seed, "epoch", ``epoch``), then a test; its record."""
    config, world, device = state.config, state.world, state.world.device
    began = time.perf_counter()
    steps_per_epoch = len(batch_starts(len(state.dataset.train), config.batch_size, MIN_TRAIN_BATCH))
    total_steps = steps_per_epoch * config.epochs
    shuffle = generator(config.seed, "epoch", epoch)
    state.hooks.start_epoch(state.model)
    loss_sum, correct, seen = 0.0, 0, 0
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(derive_seed(config.seed, "forward", epoch))
        for step, (x, y) in enumerate(
            world.batches(state.dataset.train, config.batch_size, shuffle, MIN_TRAIN_BATCH),
            start=epoch * steps_per_epoch,
        ):
            if state.dataset.augment:
                x = augment_batch(x, shuffle)
            x, y = x.to(device), y.to(device)
            logits = trainer(x)
            loss = state.criterion(logits, y)
            state.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            state.optimizer.step()
            state.hooks.after_step(state.model, step / total_steps)
            loss_sum += float(loss.detach()) * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
    state.scheduler.step()
    loss_sum, correct, seen = world.sum(loss_sum, correct, seen)
    if not math.isfinite(loss_sum):
        raise VerificationError(
            f"training diverged in epoch {epoch + 1}: the loss is NaN or Inf (a lower --lr may help)"
        )
    test_accuracy, test_loss = evaluate(state.model, state.dataset.test, device)
    return {
        "epoch": epoch + 1,
        "train_loss": loss_sum / seen,
        "train_accuracy": correct / seen,
        "test_loss": test_loss,
        "test_accuracy": test_accuracy,
        "lr": state.optimizer.param_groups[0]["lr"],
        "seconds": time.perf_counter() - began,
    }


def _save_epoch(state: _Training, epoch: int, history: list[dict[str, Any]]) -> None:
    """Checkpoint all the state left after ``epoch``: a resume from here ends bit-identical."""
    save_checkpoint(
        state.run.checkpoint,
        {
            "epoch": epoch + 1,
            "model": state.model.state_dict(),
            "optimizer": state.optimizer.state_dict(),
            "scheduler": state.scheduler.state_dict(),
            "history": history,
        },
    )


def ticket_weights(config: TrainConfig) -> str:
    """Where a ticket of ``config`` takes its masked layers' weights from (:data:`mptc.ticket.WEIGHTS`):
    the seed; stored in it (a zoo jackpot's, searched in a dense run); or a user's pre-trained
    weights, referenced by their hash."""
    if is_import_path(config.model) and config.pretrained is not None and config.method != "dense":
        return "pretrained"
    return "stored" if config.method in PRETRAINED_METHODS else "seed"


def _finish(state: _Training, history: list[dict[str, Any]]) -> TrainResult:
    """Check the ranks agree, then (rank 0) write the ticket and metrics.json."""
    config, world, model, dataset = state.config, state.world, state.model, state.dataset
    world.check_masks_agree(model)
    if not world.is_main:
        world.finish()  # rank 0 writes the ticket and metrics
        return TrainResult(config=config, run_dir=state.run.root, model=model.cpu().eval())
    model.cpu().eval()
    ticket_bytes = save_ticket(
        model,
        config,
        state.run.ticket,
        input_shape=dataset.input_shape,
        num_classes=dataset.num_classes,
        weights=ticket_weights(config),
    )
    final_accuracy, final_loss = evaluate(model, dataset.test)
    metrics = {
        "mptc_version": __version__,
        "method": config.method,
        "model": config.model,
        "dataset": dataset.name,
        "binary_act": config.binary_act,
        "sparsity": overall_sparsity(model),
        "kept_fraction": 1.0 - overall_sparsity(model),
        "test_accuracy": final_accuracy,
        "test_loss": final_loss,
        "epochs": config.epochs,
        "train_seconds": sum(r["seconds"] for r in history),
        "ticket_bytes": ticket_bytes,
        "fp32_bytes": fp32_bytes(model),
        "layers": layer_summary(model),
        "history": history,
        **state.hooks.report(model, dataset),
    }
    write_json(state.run.metrics, metrics)
    world.finish()
    return TrainResult(config=config, run_dir=state.run.root, metrics=metrics, model=model)
