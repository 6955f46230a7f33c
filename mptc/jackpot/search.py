"""The lottery-jackpot search (Zhang et al. 2021) as training hooks.

* prepare: load the pre-trained dense model, copy it onto the masked model, freeze everything
  but the scores (BatchNorm affine too, unless ``learn_bn``), split ``sparsity`` over layers by
  one global magnitude threshold and start from the magnitude mask (scores 1.0 / 0.99).
* each epoch: train mode, except BatchNorm, which keeps normalising with the pre-trained
  running statistics (they are weights of the pre-trained model, not re-estimated).
* each step: signed-score straight-through gradient ``dL/ds = dL/dW_eff * W`` (in the masked
  layers), then the short restriction (:mod:`mptc.jackpot.restriction`) with a cosine rate.
* report: the pre-trained model's accuracy, the magnitude-pruning baseline at the same per-layer
  counts (as is, and with BatchNorm statistics re-estimated: :mod:`mptc.jackpot.batchnorm`),
  and the overlap of the searched mask with the magnitude mask.

``--method magnitude`` is the same with 0 search epochs: the magnitude mask is the ticket.
Importing this module registers :class:`JackpotSearch` as the hooks of both methods.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from mptc.config import PRETRAINED_METHODS, TrainConfig
from mptc.data import Dataset
from mptc.errors import InputError
from mptc.jackpot.batchnorm import recalibrated
from mptc.jackpot.magnitude import global_kept_counts, magnitude_mask, magnitude_scores, mask_overlap
from mptc.jackpot.pretrained import copy_pretrained, load_pretrained
from mptc.jackpot.restriction import restrict_mask_change, restriction_rate
from mptc.nn.layers import masked_layers
from mptc.train.hooks import SearchHooks, register_hooks
from mptc.train.loop import evaluate

log = logging.getLogger(__name__)


def start_from_magnitude(model: nn.Module, sparsity: float, learn_bn: bool) -> list[int]:
    """Put a masked model holding pre-trained weights at the start of a jackpot search.

    Freezes everything but the scores (and BatchNorm affine parameters with ``learn_bn``), splits
    ``sparsity`` over the masked layers by one global magnitude threshold and sets the scores to
    the magnitude mask's 1.0 / 0.99. Returns the per-layer kept counts.
    """
    for module in model.modules():
        trainable = learn_bn and isinstance(module, _BatchNorm)
        for name, parameter in module.named_parameters(recurse=False):
            parameter.requires_grad_(name == "scores" or trainable)
    layers = masked_layers(model)
    counts = global_kept_counts([layer.weight for _, layer in layers], sparsity)
    for (name, layer), kept in zip(layers, counts, strict=True):
        layer.set_kept(kept)
        layer.scores.data.copy_(magnitude_scores(magnitude_mask(layer.weight, kept)))
        log.info(
            "%s keeps %d of %d weights (sparsity %.4f)",
            name,
            kept,
            layer.weight.numel(),
            1 - kept / layer.weight.numel(),
        )
    return counts


class JackpotSearch(SearchHooks):
    """Hooks of ``--method jackpot`` and ``--method magnitude`` (see the module doc)."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.pretrained_accuracy: float | None = None
        self._masks: dict[str, Tensor] = {}

    def prepare(self, model: nn.Module, dataset: Dataset) -> None:
        if self.config.pretrained is None:
            raise InputError(f"--method {self.config.method} needs --pretrained weights to search in")
        dense = load_pretrained(self.config.pretrained, self.config, dataset)
        self.pretrained_accuracy = evaluate(dense, dataset.test)[0]
        copy_pretrained(dense, model)
        start_from_magnitude(model, self.config.sparsity, self.config.learn_bn)

    def start_epoch(self, model: nn.Module) -> None:
        model.train()
        for module in model.modules():
            if isinstance(module, _BatchNorm):
                module.eval()
        self._masks = {name: layer.mask().bool() for name, layer in masked_layers(model)}

    def after_step(self, model: nn.Module, progress: float) -> None:
        rate = restriction_rate(progress, self.config.restriction_rate) if self.config.restriction else None
        for name, layer in masked_layers(model):
            self._masks[name] = restrict_mask_change(layer, self._masks[name], rate)

    def report(self, model: nn.Module, dataset: Dataset) -> dict[str, Any]:
        layers = masked_layers(model)
        magnitude = [magnitude_mask(layer.weight, layer.kept) for _, layer in layers]
        baseline = copy.deepcopy(model)
        for (_, layer), mask in zip(masked_layers(baseline), magnitude, strict=True):
            layer.set_mask(mask)
        return {
            "jackpot": {
                "pretrained": self.config.pretrained,
                "pretrained_test_accuracy": self.pretrained_accuracy,
                "magnitude_test_accuracy": evaluate(baseline, dataset.test)[0],
                "magnitude_recalibrated_test_accuracy": evaluate(recalibrated(baseline, dataset.train), dataset.test)[
                    0
                ],
                "mask_overlap": mask_overlap([layer.mask() for _, layer in layers], magnitude),
                "classifier": "dense" if self.config.dense_last else "pruned",
                "restriction": {
                    "on": self.config.restriction,
                    "initial_rate": self.config.restriction_rate,
                    "schedule": "cosine",
                },
            }
        }


register_hooks(JackpotSearch, *PRETRAINED_METHODS)
