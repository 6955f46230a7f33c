"""Straight-through estimators: the forward maths and the gradient each method trains with.

Every function here is an :class:`torch.autograd.Function` whose docstring states both passes;
the spec is ``shared/notes/algorithms.md`` (edge-popup, biprop MPT-1/32 and MPT-1/1).
"""

from __future__ import annotations

import torch
from torch import Tensor


def top_k_mask(magnitude: Tensor, kept: int) -> Tensor:
    """Float 0/1 mask keeping exactly the ``kept`` largest entries of ``magnitude``.

    A threshold from ``kthvalue`` (O(n), no sort and no n-sized index tensor) selects the mask;
    only when ties straddle the threshold (e.g. the 1.0/0.99 initial scores of a jackpot) is
    the exact count restored with a stable ``topk`` over the flattened tensor.
    """
    flat = magnitude.detach().reshape(-1)
    numel = flat.numel()
    if kept >= numel:
        return torch.ones_like(magnitude)
    threshold = flat.kthvalue(numel - kept).values
    mask = magnitude.detach() > threshold
    if int(mask.sum()) != kept:
        mask = torch.zeros(numel, dtype=torch.bool, device=flat.device)
        mask[flat.topk(kept, sorted=False).indices] = True
        mask = mask.reshape(magnitude.shape)
    return mask.to(magnitude.dtype)


class EdgePopupMask(torch.autograd.Function):
    """Top-k mask with a straight-through gradient (Ramanujan et al. 2020).

    Forward: ``M = topk_mask(|s|, k)``. Backward: ``dL/d|s| = dL/dM`` (identity). Used as
    ``W_eff = W * M(|s|)``, autograd then gives the spec's ``dL/ds = dL/dW_eff * W * sign(s)``.
    """

    @staticmethod
    def forward(ctx, magnitude: Tensor, kept: int) -> Tensor:  # type: ignore[override]
        return top_k_mask(magnitude, kept)

    @staticmethod
    def backward(ctx, grad_mask: Tensor):  # type: ignore[override]
        return grad_mask, None


class BipropTernaryWeight(torch.autograd.Function):
    """MPT-1/32 effective weight ``W_eff = alpha * sign(W) * M`` (Diffenderfer & Kailkhura 2021).

    Forward: ``M = topk_mask(|s|, k)``; ``alpha = mean(|W| over kept)`` per layer, or per output
    channel when ``per_channel``; ``sign(0) = +1``.
    Backward (as the biprop reference): alpha is a constant and the straight-through gradient to
    the score magnitude is ``dL/d|s| = dL/dW_eff * sign(W) * |W| = dL/dW_eff * W``; through
    ``|s|`` autograd adds the factor ``sign(s)``.
    """

    @staticmethod
    def forward(ctx, magnitude: Tensor, weight: Tensor, kept: int, per_channel: bool) -> Tensor:  # type: ignore[override]
        mask = top_k_mask(magnitude, kept)
        alpha = ternary_alpha(weight, mask, per_channel)
        ctx.save_for_backward(weight)
        return alpha * binary_sign(weight) * mask

    @staticmethod
    def backward(ctx, grad_weight: Tensor):  # type: ignore[override]
        (weight,) = ctx.saved_tensors
        return grad_weight * weight, None, None, None


def ternary_alpha(weight: Tensor, mask: Tensor, per_channel: bool) -> Tensor:
    """``alpha = sum(|W| * M) / sum(M)``, a scalar or one per output channel (shape broadcastable
    to ``weight``); a channel that keeps nothing gets alpha 0."""
    kept_magnitude = weight.abs() * mask
    if not per_channel:
        return kept_magnitude.sum() / mask.sum().clamp_min(1)
    dims = tuple(range(1, weight.dim()))
    alpha = kept_magnitude.sum(dims, keepdim=True) / mask.sum(dims, keepdim=True).clamp_min(1)
    return alpha


def binary_sign(x: Tensor) -> Tensor:
    """``sign(x)`` with the project convention ``sign(0) = +1`` (see :mod:`mptc.conventions`)."""
    return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))


class BiRealSign(torch.autograd.Function):
    """Binary activation ``sign(x)`` (sign(0) = +1) with the Bi-Real gradient (Liu et al. 2018).

    Backward: ``d sign(x)/dx ~= 2 - 2|x|`` for ``|x| <= 1`` and 0 outside, the derivative of the
    piecewise-quadratic approximation of sign.
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return binary_sign(x)

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad_out * (2 - 2 * x.abs()).clamp_min(0)
