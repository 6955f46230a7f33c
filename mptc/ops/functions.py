"""ONNX function bodies of the ``ai.mptc`` operators, in standard ops only.

A packed model carries one model-local ``FunctionProto`` per operator type in use (not one per
instance): each node's own shape information comes in through attribute references
(``ref_attr_name``, written ``@kernel_shape`` in ONNX text) and from the shapes of its inputs, and
attributes a node leaves out take the defaults declared on the function (``attribute_proto``,
IR version >= 9). onnxruntime (checked with 1.31) inlines these bodies and folds the weight
unpacking into constants at session start, so it runs a packed model with no extra library.

The body, for both operators (bit ``j`` of byte ``b`` is element ``8*b + j``, LSB first)::

    bits[o, 8*b + j] = (packed[o, b] >> j) & 1               # BitShift, BitwiseAnd, Reshape
    W[o, :K]         = (2 * sign_bit - 1) * mask_bit * scale[o]   # Slice to K = row length
    T                = Where(X >= 0, 1, -1) if input_mode == "binary" else Sign(X) if "sign" else X
    BinaryConv:  Y   = Conv(Pad(T, pads, pad_value), W.reshape(O, C/group, kh, kw), bias)
    BinaryDense: Y   = Gemm(T, W, bias, transB=1)

``scale`` is multiplied into the weight, so onnxruntime runs one plain Conv/Gemm; the result
differs from ``scale * Conv(...)`` by float rounding only.

The comparison on the ``input_mode`` string needs ``Equal`` on strings, added in opset 19, and a
function must import the same default-domain opset version as its model (the ONNX checker refuses a
mismatch): bodies are therefore built for the model's own opset, which must be >= 19.
"""

from __future__ import annotations

import onnx
import onnx.parser
import onnx_ir as ir

from mptc.errors import UnsupportedError
from mptc.ops.reference import DOMAIN

MIN_OPSET = 19
"""Lowest default-domain opset the bodies are valid in (``Equal`` on strings)."""

# Unpacks sign_bits/mask_bits into float rows `w_rows` of length `k` (defined by the caller) and
# computes the operator input `t` from X and input_mode. Shared by both bodies.
_UNPACK_AND_INPUT = """
  shifts = Constant <value = uint8[8] {0, 1, 2, 3, 4, 5, 6, 7}> ()
  one_u8 = Constant <value = uint8 {1}> ()
  last = Constant <value = int64[1] {-1}> ()
  rows = Constant <value = int64[2] {0, -1}> ()
  zero_1 = Constant <value = int64[1] {0}> ()
  one_1 = Constant <value = int64[1] {1}> ()
  s_bytes = Unsqueeze (sign_bits, last)
  s_shifted = BitShift <direction = "RIGHT"> (s_bytes, shifts)
  s_bits = BitwiseAnd (s_shifted, one_u8)
  s_flat = Reshape (s_bits, rows)
  s_float = Cast <to = 1> (s_flat)
  m_bytes = Unsqueeze (mask_bits, last)
  m_shifted = BitShift <direction = "RIGHT"> (m_bytes, shifts)
  m_bits = BitwiseAnd (m_shifted, one_u8)
  m_flat = Reshape (m_bits, rows)
  m_float = Cast <to = 1> (m_flat)
  two = Constant <value_float = 2.0> ()
  one = Constant <value_float = 1.0> ()
  minus_one = Constant <value_float = -1.0> ()
  zero = Constant <value_float = 0.0> ()
  s_twice = Mul (s_float, two)
  s_pm = Sub (s_twice, one)
  w_all = Mul (s_pm, m_float)
  w_rows = Slice (w_all, zero_1, k, one_1)
  mode = Constant <value_string: string = @input_mode> ()
  binary = Constant <value_string = "binary"> ()
  is_binary = Equal (mode, binary)
  non_negative = GreaterOrEqual (X, zero)
  signs = Where (non_negative, one, minus_one)
  exact = Constant <value_string = "sign"> ()
  is_exact = Equal (mode, exact)
  exact_signs = Sign (X)
  real_or_exact = Where (is_exact, exact_signs, X)
  t = Where (is_binary, signs, real_or_exact)
"""

_BODIES = {
    "BinaryConv": (
        """BinaryConv <kernel_shape, strides: ints = [1, 1], pads: ints = [0, 0, 0, 0],
            dilations: ints = [1, 1], group: int = 1, input_mode: string = "real",
            pad_value: float = 0.0>
(X, sign_bits, mask_bits, scale, bias) => (Y)
{
  channels = Shape <start = 1, end = 2> (X)
  group = Constant <value_int: int = @group> ()
  kernel = Constant <value_ints: ints = @kernel_shape> ()
  group_channels = Div (channels, group)
  taps = ReduceProd <keepdims = 1> (kernel)
  k = Mul (group_channels, taps)
"""
        + _UNPACK_AND_INPUT
        + """
  w_shape = Concat <axis = 0> (zero_1, group_channels, kernel)
  w_ternary = Reshape (w_rows, w_shape)
  per_output = Constant <value = int64[4] {-1, 1, 1, 1}> ()
  scale_4d = Reshape (scale, per_output)
  w = Mul (w_ternary, scale_4d)
  pads = Constant <value_ints: ints = @pads> ()
  pad_value = Constant <value_float: float = @pad_value> ()
  spatial = Constant <value = int64[2] {2, 3}> ()
  padded = Pad <mode = "constant"> (t, pads, pad_value, spatial)
  Y = Conv <strides: ints = @strides, dilations: ints = @dilations, group: int = @group> (padded, w, bias)
}
"""
    ),
    "BinaryDense": (
        """BinaryDense <input_mode: string = "real"> (X, sign_bits, mask_bits, scale, bias) => (Y)
{
  k = Shape <start = 1, end = 2> (X)
"""
        + _UNPACK_AND_INPUT
        + """
  per_output = Constant <value = int64[2] {-1, 1}> ()
  scale_2d = Reshape (scale, per_output)
  w = Mul (w_rows, scale_2d)
  Y = Gemm <transB = 1> (t, w, bias)
}
"""
    ),
}

OP_TYPES = tuple(_BODIES)
"""The ``ai.mptc`` operator types, in the order the docs list them."""


def function_proto(op_type: str, opset: int) -> onnx.FunctionProto:
    """The function body of ``op_type`` for a model whose default-domain opset is ``opset``.

    Raises:
        UnsupportedError: ``op_type`` is not an ``ai.mptc`` operator, or ``opset`` < 19.
    """
    if op_type not in _BODIES:
        raise UnsupportedError(f"{op_type!r} is not an {DOMAIN} operator (known: {', '.join(OP_TYPES)})")
    if opset < MIN_OPSET:
        raise UnsupportedError(
            f"{DOMAIN} function bodies need default-domain opset >= {MIN_OPSET}, the model imports {opset}"
        )
    header = f'<domain: "{DOMAIN}", opset_import: ["" : {opset}]>\n'
    return onnx.parser.parse_function(header + _BODIES[op_type])


def function(op_type: str, opset: int) -> ir.Function:
    """:func:`function_proto` as an onnx-ir function, ready for ``model.functions``."""
    return ir.serde.deserialize_function(function_proto(op_type, opset))
