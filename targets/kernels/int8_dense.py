"""Dense ternary layers on uint8 activations (``mptc compile --activations int8``).

The layer's input arrives as float and is quantized in the kernel, once per row, exactly as
ONNX ``QuantizeLinear`` does (``q = saturate(round_half_even(x / s) + zp)`` to uint8); the weight
stays 2 bits per tap in the module as codes ``c = w + 1`` in {0, 1, 2} (``layout.int8_tables``):
byte ``b = 4 * lane + i`` of a block's 64-byte vector at step ``t`` holds in bits ``2j, 2j + 1``
the code of output ``16 * block + lane`` at input ``16 t + 4 j + i``. One shift and one AND
decode 64 codes, which are valid signed and unsigned bytes, so AVX-512 VNNI's ``vpdpbusd`` (uint8 x
int8, four products into each int32 lane) or Armv8.2's ``udot`` (uint8 x uint8, four lanes at a
time) sums them without a widening step::

    acc[n, o] = sum_k q[n, k] * c[o, k]                                  (exact in int32)
    sum_k (q - zp) * w = acc - sum_k q - zp * sum_k c + zp * Kp           (w = c - 1)
    y[n, o] = float(acc[n, o] - qsum[n] + offset[o]) * rescale[o] + bias[o]

with ``offset[o] = zp * (Kp - sum_k c[o, k]) = -zp * sum_k w[o, k]`` and ``rescale[o] = s *
scale[o]`` folded at compile time, ``Kp`` the inputs padded to whole steps (pad codes are 1,
``w = 0``; pad inputs are 0).
The float result equals ``scale * (DequantizeLinear(q) @ W^T) + bias`` up to fp32 rounding.
"""

from __future__ import annotations

import numpy as np
from tvm import tirx
from tvm.script import tirx as T

from mptc.targets.kernels.dot_instructions import VPDPBUSD, DotInstruction
from mptc.targets.layout import INT8_LANES, INT8_STEP, ceil_div

DOT_TILE = 4  # output vectors per register tile: four independent chains of dot products share each broadcast
PARALLEL_MIN_VECTORS = 1 << 14
"""Code vectors (256 weights each: ``batch * ceil(O / 16) * ceil(K / 16)``) from which a layer runs on
the thread pool: below, one core sums them faster than sleeping workers wake (about 10 us)."""


def _clamp_bounds(relu: bool, upper: float | None) -> tuple[float, float]:
    """The fused ReLU / ReLU6 as bounds ``max(min(y, high), low)`` (none: the float range)."""
    widest = float(np.finfo(np.float32).max)
    return (0.0 if relu else -widest), (upper if relu and upper is not None else widest)


def dot_dense_func(
    batch: int,
    k: int,
    out: int,
    scale: float,
    zero_point: int,
    relu: bool = False,
    upper: float | None = None,
    dot: DotInstruction = VPDPBUSD,
) -> tirx.PrimFunc:
    """Scheduled PrimFunc ``(x, codes, offset, rescale, bias) -> y``: each row is quantized once,
    then tasks of ``DOT_TILE`` output vectors of 16, in parallel from :data:`PARALLEL_MIN_VECTORS`,
    the codes decoded in registers, ``16 / dot.lanes`` ``dot`` instructions per 64 weights (the codes
    are in {0, 1, 2}: unsigned and signed bytes alike)."""
    steps, blocks = ceil_div(k, INT8_STEP), ceil_div(out, INT8_LANES)
    padded = steps * INT8_STEP
    tile = max(t for t in range(1, DOT_TILE + 1) if blocks % t == 0)
    lanes, width = INT8_LANES, 4 * INT8_LANES
    parts, part_lanes, part_width = INT8_LANES // dot.lanes, dot.lanes, 4 * dot.lanes
    inv, zp = float(scale), float(zero_point)
    low, high = _clamp_bounds(relu, upper)
    tasks = T.parallel if batch * blocks * steps >= PARALLEL_MIN_VECTORS else T.serial

    @T.prim_func(private=True, s_tir=True)
    def main(
        x: T.Buffer((batch, k), "float32"),
        codes: T.Buffer((blocks, steps, width), "uint8"),
        offset: T.Buffer((blocks * lanes,), "int32"),
        rescale: T.Buffer((out,), "float32"),
        bias: T.Buffer((out,), "float32"),
        y: T.Buffer((batch, out), "float32"),
    ):
        T.func_attr({"tirx.noalias": True})
        with T.sblock("root"):
            q = T.sblock_alloc_buffer((batch, padded), "uint8")
            qsum = T.sblock_alloc_buffer((batch,), "int32")
            for n in range(batch):
                with T.sblock("quantize"):
                    T.reads(x[n, 0:k])
                    T.writes(q[n, 0:padded], qsum[n])
                    qsum[n] = 0
                    for j in range(padded):
                        if j < k:
                            q[n, j] = T.Cast(
                                "uint8",
                                T.max(
                                    T.min(T.nearbyint(x[n, j] / T.float32(inv)) + T.float32(zp), T.float32(255)),
                                    T.float32(0),
                                ),
                            )
                        else:
                            q[n, j] = T.uint8(0)
                        qsum[n] = qsum[n] + T.Cast("int32", q[n, j])
            for task in tasks(batch * (blocks // tile)):
                with T.sblock("int8_dot"):
                    T.reads(
                        q[0:batch, 0:padded],
                        qsum[0:batch],
                        codes[0:blocks, 0:steps, 0:width],
                        offset[0 : blocks * lanes],
                        rescale[0:out],
                        bias[0:out],
                    )
                    T.writes(y[0:batch, 0:out])
                    acc = T.sblock_alloc_buffer((tile, lanes), "int32", scope="local")
                    n = task // (blocks // tile)
                    first = task % (blocks // tile) * tile
                    for b in T.unroll(tile):
                        acc[b, 0:lanes] = T.Broadcast(T.int32(0), lanes)
                    for t in range(steps):
                        for j in T.unroll(4):
                            a = T.reinterpret(
                                f"int8x{part_width}",
                                T.Broadcast(
                                    T.reinterpret("int32", q.vload([n, t * 16 + j * 4], "uint8x4")), part_lanes
                                ),
                            )
                            for b, part in T.grid(tile, parts):
                                v = codes.vload([first + b, t, part * part_width], f"uint8x{part_width}")
                                w = T.reinterpret(
                                    f"int8x{part_width}",
                                    T.bitwise_and(
                                        T.shift_right(v, T.Broadcast(T.uint8(2 * j), part_width)),
                                        T.Broadcast(T.uint8(3), part_width),
                                    ),
                                )
                                acc[b, part * part_lanes : part * part_lanes + part_lanes] = dot(
                                    acc.vload([b, part * part_lanes], f"int32x{part_lanes}"), a, w
                                )
                    for b, lane in T.grid(tile, lanes):
                        if (first + b) * lanes + lane < out:
                            y[n, (first + b) * lanes + lane] = T.max(
                                T.min(
                                    T.Cast("float32", acc[b, lane] - qsum[n] + offset[(first + b) * lanes + lane])
                                    * rescale[(first + b) * lanes + lane]
                                    + bias[(first + b) * lanes + lane],
                                    T.float32(high),
                                ),
                                T.float32(low),
                            )

    return main
