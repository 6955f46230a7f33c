"""The jackpot's short restriction: after each optimiser step the mask may change only a little.

Let ``B`` be a layer's mask before the step and ``T = topk(s, k)`` the mask the updated scores
``s`` rank. The candidates to revive are ``T \\ B`` (pruned, score now above the threshold) and
the candidates to prune ``B \\ T`` (kept, score now at or below it); both have the same size
``n`` because both masks keep ``k``. Revive candidates sorted by score descending are paired
with prune candidates sorted ascending, and only the first ``ceil(rate * n)`` swaps are applied.

The mask is a function of the scores, so the held-back pairs are written into the scores: with
``tau = min_{T} s`` (the new threshold), a held-back prune candidate gets ``s = tau`` (kept, at
the threshold) and a held-back revive candidate, like any other pruned weight tied at ``tau``,
gets ``s = nextafter(tau, -inf)``. Every kept score is then ``>= tau`` and every pruned one
``< tau``, so ``topk(s, k)`` is exactly ``B`` with the applied swaps, and the held-back candidates
stay next in line: the swap happens at a later step if the gradient keeps pushing.

The reference implementation's rate schedule ``ceil((1 - epoch / E) ** 4)`` is 1 for every
epoch, which disables the restriction; here the rate decays by a cosine from its initial value.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mptc.nn.layers import MaskedLayer


def restriction_rate(progress: float, initial: float) -> float:
    """``rate(p) = initial * (1 + cos(pi p)) / 2`` for ``p`` in [0, 1] the fraction of steps done."""
    return initial * 0.5 * (1.0 + math.cos(math.pi * progress))


@torch.no_grad()
def restrict_mask_change(layer: MaskedLayer, before: Tensor, rate: float | None) -> Tensor:
    """Apply the short restriction to ``layer`` after a step; returns its mask afterwards (bool).

    Args:
        layer: a masked layer ranking signed scores (a jackpot's).
        before: its mask before the step (bool or 0/1).
        rate: fraction of the ``n`` candidate swaps to apply (``ceil(rate * n)`` of them), or
            None for no restriction (the mask follows the scores freely).

    Raises:
        ValueError: ``layer`` ranks ``|s|`` (the restriction is defined on signed scores).
    """
    if not layer.spec.signed_scores:
        raise ValueError("the short restriction applies to signed-score (jackpot) layers only")
    after = layer.mask().bool()
    before = before.bool()
    if rate is None:
        return after
    revive = (after & ~before).reshape(-1).nonzero().squeeze(1)
    allowed = math.ceil(rate * revive.numel())
    if allowed >= revive.numel():
        return after
    prune = (before & ~after).reshape(-1).nonzero().squeeze(1)
    scores = layer.scores.view(-1)
    held_revive = revive[scores[revive].argsort(descending=True, stable=True)[allowed:]]
    held_prune = prune[scores[prune].argsort(stable=True)[allowed:]]
    tau = scores[after.reshape(-1)].min()
    below = torch.nextafter(tau, torch.tensor(-math.inf, dtype=tau.dtype, device=tau.device))
    kept = after.reshape(-1).clone()
    kept[held_revive] = False
    kept[held_prune] = True
    scores[held_prune] = tau
    scores[~kept & (scores >= tau)] = below
    return kept.reshape(after.shape)
