"""``train()``: learn a mask (or dense weights) and write a resumable run directory.

Determinism is by construction: weights come from (seed, name), the shuffle of epoch ``e`` from
(seed, "epoch", e), and the checkpoint after each epoch holds all remaining state, so a run
resumed from any epoch boundary ends bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mptc import __version__
from mptc.config import PRETRAINED_METHODS, TrainConfig, parse_config
from mptc.data import Dataset, DataSplit, augment_batch, load_dataset
from mptc.errors import InputError, OutputError, UnsupportedError
from mptc.io import write_json, write_text
from mptc.models import build_model
from mptc.nn.init import generator, initialize
from mptc.nn.layers import masked_layers
from mptc.ticket import fp32_bytes, save_ticket
from mptc.train.checkpoint import restore, save_checkpoint
from mptc.train.config import resolve
from mptc.train.distributed import World, join
from mptc.train.hooks import SearchHooks, hooks_for
from mptc.train.rundir import RunDir

log = logging.getLogger(__name__)
EVAL_BATCH = 1024

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


def build(config: TrainConfig, dataset: Dataset) -> nn.Module:
    """The model of ``config`` with its seeded initial weights and scores."""
    model = build_model(config.model, config.recipe, dataset.input_shape, dataset.num_classes)
    initialize(model, config.seed, config.init or "kaiming-normal")
    return model


def _check_resume_config(run: RunDir, config: TrainConfig) -> None:
    if not run.config.is_file():
        raise InputError(f"{run.root} has no config.json: not a run directory that can be resumed")
    stored = parse_config(run.config.read_bytes(), str(run.config))
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
    config = resolve(config)
    run = _open_run_dir(Path(run_dir), config, resume)
    state = _set_up(config, run, hooks)
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


def _set_up(config: TrainConfig, run: RunDir, hooks: SearchHooks | None) -> _Training:
    """Join the processes, load the data, build the seeded model, its optimizer and schedule."""
    world = join(select_device(config.device))
    dataset = load_dataset(config.dataset)
    model = build(config, dataset)
    hooks = hooks if hooks is not None else hooks_for(config)
    hooks.prepare(model, dataset)
    model.to(world.device)
    optimizer = make_optimizer(config, model)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
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
    steps_per_epoch = math.ceil(len(state.dataset.train) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    shuffle = generator(config.seed, "epoch", epoch)
    state.hooks.start_epoch(state.model)
    loss_sum, correct, seen = 0.0, 0, 0
    for step, (x, y) in enumerate(
        world.batches(state.dataset.train, config.batch_size, shuffle), start=epoch * steps_per_epoch
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
        store_weights=config.method in PRETRAINED_METHODS,
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
