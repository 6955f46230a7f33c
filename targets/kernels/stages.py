"""Names of the kernels' stages and annotations: the kernels (``targets.kernels``) name their TE
stages and the schedules (``targets.schedules``) look them up by these, with ``get_sblock``.

A kernel has only the stages it needs (a packed input has no ``PACK``; a float output no
``LANE_BITS``), so a schedule checks which are present before it schedules them.
"""

from __future__ import annotations

PACK = "pack"  # sign + bit-pack of a float input into uint64 words
PAD = "pad"  # zero-padding of the input words (conv)
PACK_NONZERO = "pack_nonzero"  # the nonzero bit-plane of a float input for an exact ONNX Sign
PAD_NONZERO = "pad_nonzero"  # zero-padding of the nonzero words (conv)
ZERO_ROWS = "zero_rows"  # the input rows holding a zero (exact ONNX Sign)
ZERO_FLAGS = "zero_flags"  # the output rows whose window holds a zero: those count Sign exactly
POPCOUNT = "popcount"  # the XNOR-popcount reduction over taps and words
LANE_BITS = "lane_bits"  # a packed output's bits, per vector lane (``bits.threshold_words``)
OUTPUT = "output"  # the kernel's result: the float epilogue, the packed words, or a pool's words
FLAT = "flat"  # the flat input planes of a real-input conv (``layout.FlatInput``)
LUT = "lut"  # the lookup planes of a ternary-lut conv: each channel group's signed sums (``binary_conv.lut_input``)
GATHER = "gather"  # the sparse sums: the block-sparse conv's ``te.extern``, the sign-split dense's reduction
TERNARY = "ternary"  # the dense-ternary reduction over 2-bit weight planes, decoded
DECODE = "decode"  # a dense-ternary conv's fp32 block of decoded weights (per parallel task)
DEPTHWISE = "depthwise"  # a depthwise conv's taps summed over flat outputs (``kernels.depthwise``)
SPLIT = "split"  # the sign-split operand ``[x, -x, 0]`` of a sparse dense layer
QUANTIZE = "quantize"  # the uint8 activations of an int8 layer (ONNX ``QuantizeLinear``)
INT8_DOT = "int8_dot"  # the integer sums of uint8 activations and 2-bit weight codes
PIXEL_LEVELS = "pixel_levels"  # an int8 conv's sum of each padded pixel's levels over its channels
WINDOW_LEVELS = "window_levels"  # an int8 conv's sum of the levels in each output's window
WINOGRAD_INPUT = "winograd_input"  # a Winograd conv's transformed input tiles (``kernels.winograd``)

PLANE_SHAPE = "mptc.plane_shape"  # annotation of ``FLAT``: (rows, columns) of each flat plane
LUT_SHAPE = "mptc.lut_shape"  # annotation of ``LUT``: (patterns, rows, columns) of each group's planes
TILE_SHAPE = "mptc.tile_shape"  # annotation of ``WINOGRAD_INPUT``: (n, rows, columns) of the output's tiles
TILE = "mptc.tile"  # annotation of a Winograd conv's ``OUTPUT``: outputs per side of one tile
PHASE_SHAPE = "mptc.phase_shape"  # annotation of a depthwise conv's ``FLAT``: (sh, sw, rows, columns) of its plane
EXACT_SIGN = "mptc.exact_sign"  # annotation of ``POPCOUNT``: counts over the nonzero plane too (ONNX Sign)
COLUMN_STRIDE = "mptc.column_stride"  # annotation of ``POPCOUNT``: input words between output columns
