"""The fused tail of a kernel's float epilogue (``targets.epilogue``): residual add (convs), then ReLU (or ReLU6)."""

from __future__ import annotations

from tvm import te, tirx


def residual_input(shape, fused: bool) -> te.Tensor | None:
    """The residual placeholder ``(N, O, OH, OW)`` when the epilogue adds one."""
    return te.placeholder(shape, "float32", name="residual") if fused else None


def finish(
    value: tirx.PrimExpr, residual: te.Tensor | None, relu: bool, n, o, oy, ox, upper: float | None = None
) -> tirx.PrimExpr:
    """``value [+ residual[n, o, oy, ox]]``, clamped at 0 if ``relu`` (and at ``upper`` above: ReLU6)."""
    if residual is not None:
        value = value + residual[n, o, oy, ox]
    return clamp(value, relu, upper)


def clamp(value: tirx.PrimExpr, relu: bool, upper: float | None = None) -> tirx.PrimExpr:
    """``value`` clamped at 0 if ``relu`` (and at ``upper`` above: ReLU6)."""
    if not relu:
        return value
    clamped = tirx.max(value, tirx.const(0.0, "float32"))
    return clamped if upper is None else tirx.min(clamped, tirx.const(upper, "float32"))
