"""Magnitude pruning with one global threshold: the jackpot's starting point and its baseline.

Over the masked layers' frozen weights ``W_1..W_L`` (``n_i`` entries each) and a target
sparsity ``s`` (fraction PRUNED), keep the ``K = kept_count(sum_i n_i, s)`` largest ``|w|`` of the
whole model. With ``t`` the ``K``-th largest magnitude, layer ``i`` keeps
``k_i = #{w in W_i : |w| >= t}`` (ties at ``t`` broken by position), so ``sum_i k_i = K`` and the
per-layer sparsities ``s_i = 1 - k_i / n_i`` have the ``n_i``-weighted mean ``s`` (up to the
rounding of ``K``). Layers with larger weights keep more of them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mptc.conventions import kept_count
from mptc.nn.estimators import top_k_mask

KEPT_SCORE = 1.0
PRUNED_SCORE = 0.99


def global_kept_counts(weights: Sequence[Tensor], sparsity: float) -> list[int]:
    """Per-layer kept counts ``k_i`` from one global magnitude threshold (see the module doc).

    Args:
        weights: the layers' frozen weights.
        sparsity: model-wide fraction pruned, in [0, 1).

    Returns:
        ``k_i`` per layer, each at least 1 (a layer pruned away would cut the network).
    """
    magnitudes = torch.cat([w.detach().abs().reshape(-1).float().cpu() for w in weights])
    total = kept_count(magnitudes.numel(), sparsity)
    top = magnitudes.topk(total, sorted=False).indices
    owner = torch.repeat_interleave(torch.arange(len(weights)), torch.tensor([w.numel() for w in weights]))
    counts = torch.bincount(owner[top], minlength=len(weights))
    return [max(1, int(count)) for count in counts]


def magnitude_mask(weight: Tensor, kept: int) -> Tensor:
    """Float 0/1 mask of the ``kept`` largest ``|W|`` of one layer."""
    return top_k_mask(weight.detach().abs(), kept)


def magnitude_scores(mask: Tensor) -> Tensor:
    """Initial jackpot scores: 1.0 where ``mask`` keeps, 0.99 where it prunes.

    Ranking these signed scores gives back ``mask`` exactly, so the search starts from the
    magnitude-pruned model; the 0.01 gap is what a gradient step must cross to swap a weight.
    """
    return torch.where(mask.bool(), KEPT_SCORE, PRUNED_SCORE).to(mask.dtype)


def mask_overlap(masks: Sequence[Tensor], reference: Sequence[Tensor]) -> float:
    """Fraction of the ``reference`` masks' kept weights that ``masks`` keep too (over all layers).

    ``|M cap R| / |R|``; with equal per-layer counts (a jackpot and its magnitude start) it is
    symmetric, 1.0 for identical masks.
    """
    shared = sum(int((m.bool() & r.bool()).sum()) for m, r in zip(masks, reference, strict=True))
    kept = sum(int(r.bool().sum()) for r in reference)
    return shared / kept if kept else 1.0
