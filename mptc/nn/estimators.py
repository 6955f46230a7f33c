"""Straight-through estimators: the forward maths and the gradient each method trains with.

Every function here is an :class:`torch.autograd.Function` whose docstring states both passes;
the spec is ``shared/notes/algorithms.md`` (edge-popup, biprop MPT-1/32 and MPT-1/1).
"""

from __future__ import annotations

import torch
from torch import Tensor

RADIX_BITS = 16
_BUCKETS = 1 << RADIX_BITS


def _ordered_keys(values: Tensor) -> Tensor:
    """int32 keys whose order is the float32 order (negative floats have their magnitude bits
    flipped), so a radix histogram over the high bits finds the k-th largest value. Magnitudes
    (never negative, except -0.0, which the flip leaves below +0.0) need no flip."""
    bits = values.contiguous().view(torch.int32)
    if bool(bits.min() >= 0):
        return bits
    return bits ^ ((bits >> 31) & 0x7FFFFFFF)


def top_k_mask(score_key: Tensor, kept: int) -> Tensor:
    """Float 0/1 mask keeping exactly the ``kept`` largest entries of ``score_key``.

    Radix select, not a sort: one histogram of the top 16 bits of the order-preserving keys
    locates the bucket that holds the k-th largest value, and ``kthvalue`` runs only inside that
    bucket (a few hundred entries), which is ~7x cheaper than ``kthvalue`` over the layer on CPU.
    Only when ties straddle the threshold (e.g. the 1.0/0.99 initial scores of a jackpot) is
    the exact count restored with ``topk``.
    """
    flat = score_key.detach().reshape(-1)
    numel = flat.numel()
    if kept >= numel:
        return torch.ones_like(score_key)
    if flat.dtype != torch.float32:
        mask = flat > flat.kthvalue(numel - kept).values
    else:
        keys = _ordered_keys(flat)
        high = (keys >> RADIX_BITS) + _BUCKETS // 2
        at_or_above = torch.bincount(high, minlength=_BUCKETS).flip(0).cumsum(0).flip(0)
        bucket = int((at_or_above >= kept).sum()) - 1
        above_bucket = int(at_or_above[bucket + 1]) if bucket + 1 < _BUCKETS else 0
        inside = keys[high == bucket]
        need = kept - above_bucket
        if need == inside.numel():
            return (high >= bucket).reshape(score_key.shape).to(score_key.dtype)
        threshold = inside.kthvalue(inside.numel() - need).values
        if int((inside == threshold).sum()) == 1:  # no tie at the threshold: the count is exact
            return (keys > threshold).reshape(score_key.shape).to(score_key.dtype)
        mask = keys > threshold
    if int(mask.sum()) != kept:
        mask = torch.zeros(numel, dtype=torch.bool, device=flat.device)
        mask[flat.topk(kept, sorted=False).indices] = True
    return mask.reshape(score_key.shape).to(score_key.dtype)


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
    """MPT-1/32 weight ``W_eff = alpha * T``, ``T = sign(W) * M`` (Diffenderfer & Kailkhura 2021),
    returned as the pair ``(T, alpha)``: layers compute ``op(x, T) * alpha``, so the sums over
    +-1 weights are exact integers for binary inputs, in training as in every exported stage.

    ``weight_sign`` and ``weight_abs`` are ``sign(W)`` and ``|W|``, passed in because the frozen
    weight's are computed once, not every step.

    Forward: ``M = topk_mask(|s|, k)``; ``alpha = mean(|W| over kept)`` per layer, or per output
    channel when ``per_channel``; ``sign(0) = +1``. A channel that keeps nothing (its ``T`` row is
    zero) gets alpha 1 instead of 0: its output is 0 either way, and its scores keep a gradient.
    Backward (as the biprop reference): alpha is a constant and the straight-through gradient to
    the score magnitude is ``dL/d|s| = dL/dW_eff * sign(W) * |W| = dL/dW_eff * W``, with
    ``dL/dW_eff = dL/dT / alpha``; through ``|s|`` autograd adds the factor ``sign(s)``.
    """

    @staticmethod
    def forward(
        ctx, score_key: Tensor, weight: Tensor, weight_sign: Tensor, weight_abs: Tensor, kept: int, per_channel: bool
    ):  # type: ignore[override]
        mask = top_k_mask(score_key, kept)
        alpha = ternary_alpha(weight_abs, mask, per_channel)
        alpha = torch.where(alpha > 0, alpha, torch.ones_like(alpha))
        ctx.save_for_backward(weight, alpha)
        ctx.mark_non_differentiable(alpha)
        return weight_sign * mask, alpha

    @staticmethod
    def backward(ctx, grad_levels: Tensor, _grad_alpha: Tensor):  # type: ignore[override]
        weight, alpha = ctx.saved_tensors
        return grad_levels / alpha * weight, None, None, None, None, None


def ternary_alpha(magnitude: Tensor, mask: Tensor, per_channel: bool) -> Tensor:
    """``alpha = sum(|W| * M) / sum(M)`` from ``magnitude = |W|``, a scalar or one per output
    channel (shape broadcastable to the weight); a channel that keeps nothing gets alpha 0."""
    if not per_channel:
        return torch.linalg.vecdot(magnitude.reshape(-1), mask.reshape(-1)) / max(float(mask.sum()), 1.0)
    kept_magnitude = magnitude * mask
    dims = tuple(range(1, magnitude.dim()))
    return kept_magnitude.sum(dims, keepdim=True) / mask.sum(dims, keepdim=True).clamp_min(1)


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
