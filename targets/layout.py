"""Compile-time re-layout of ``ai.mptc`` weights into the tables the TVM kernels read.

The ONNX operators carry ``sign_bits`` / ``mask_bits`` as ``uint8 (O, ceil(K / 8))`` rows over
``K = C * kh * kw`` in ``(c, ky, kx)`` order (``docs/operators.md``). The kernels want:

* binary path: ``uint64`` words over input channels, one word row per tap ``(ky, kx)``, with
  ``lanes`` consecutive output channels interleaved as the innermost axis (the vector lanes of
  the popcount loop); channels are zero-padded to whole words and outputs to whole lanes. Pad
  bits are 0 in both the mask and the activations, so they add nothing to any count;
* a border-class table that makes zero padding exact without a branch in the inner loop;
* real path, sparse forms: for a dense layer an ELL index table of the kept taps into a
  sign-split operand ``[x, -x, 0]`` (the kernel only adds), padded with the index of the zero
  slot; for a conv a CSR table of flat tap offsets per block of output channels, in segments by
  the block's weights at the tap, laid out group by group of input channels in the order the
  kernel walks them (``block_sparse_conv_tables``);
* real path, dense-ternary form: two ``uint32`` bit-planes (``+1`` taps, ``-1`` taps) with the
  output channels along the bits, read as vector masks and decoded in registers
  (``ternary_planes``): the weight stays 2 bits per tap in the module;
* uint8 input (int8 kernels): 2-bit codes ``w + 1``, four per byte, in 64-byte vectors of 16
  outputs x 4 inputs per step, and the integer offset and float rescale that fold the zero point
  and the scales (``int8_tables``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from mptc.ops.reference import unpack_ternary
from mptc.targets.policy import KernelPolicy

WORD_BITS = 64
PLANE = "uint32"  # word of a dense-ternary bit-plane: 32 output channels, two AVX-512 float vectors
PLANE_BITS = 32


@dataclass(frozen=True)
class ConvGeometry:
    """Shapes of one 2-D convolution (NCHW input, OIHW weight, ONNX ``pads`` order t, l, b, r)."""

    batch: int
    channels: int
    height: int
    width: int
    out_channels: int
    kernel: tuple[int, int]
    strides: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    dilations: tuple[int, int] = (1, 1)

    @property
    def padded_height(self) -> int:
        return self.height + self.pads[0] + self.pads[2]

    @property
    def padded_width(self) -> int:
        return self.width + self.pads[1] + self.pads[3]

    @property
    def out_height(self) -> int:
        return (self.padded_height - (self.kernel[0] - 1) * self.dilations[0] - 1) // self.strides[0] + 1

    @property
    def out_width(self) -> int:
        return (self.padded_width - (self.kernel[1] - 1) * self.dilations[1] - 1) // self.strides[1] + 1

    @property
    def phase_height(self) -> int:
        """Rows of one stride phase of the padded input (``ceil(Hp / sh)``)."""
        return ceil_div(self.padded_height, self.strides[0])

    @property
    def phase_width(self) -> int:
        """Columns of one stride phase of the padded input (``ceil(Wp / sw)``)."""
        return ceil_div(self.padded_width, self.strides[1])

    @property
    def channel_words(self) -> int:
        return ceil_div(self.channels, WORD_BITS)

    @property
    def tap_words(self) -> int:
        """Words an XNOR-popcount output reduces over: every tap's channel words."""
        return self.kernel[0] * self.kernel[1] * self.channel_words


def pointwise_geometry(geo: ConvGeometry) -> ConvGeometry | None:
    """A 1x1 unpadded conv as the stride-1 one (a GEMM over pixels) on its input subsampled by its
    stride (itself at stride 1); None for any other conv."""
    if tuple(geo.kernel) != (1, 1) or any(geo.pads) or tuple(geo.dilations) != (1, 1):
        return None
    return ConvGeometry(geo.batch, geo.channels, geo.out_height, geo.out_width, geo.out_channels, (1, 1))


SIGN_PLANE, MASK_PLANE = 0, 1  # the two word planes of ``BinaryConvTables.planes``


@dataclass(frozen=True)
class BinaryConvTables:
    """Constants of the XNOR-popcount conv: ``(O/lanes, kh, kw, Cw, lanes)`` words and the border table."""

    sign: np.ndarray
    mask: np.ndarray
    border: np.ndarray  # int32 (row classes, column classes, O padded): exact count per border class
    row_class: np.ndarray  # int32 (OH,)
    col_class: np.ndarray  # int32 (OW,)

    @property
    def planes(self) -> np.ndarray:
        """``sign`` and ``mask`` as the kernel reads them, ``(O/lanes, kh, kw, Cw, 2, lanes)``
        (``SIGN_PLANE``, ``MASK_PLANE``): a vector's sign words beside its mask words, one paired load."""
        return np.ascontiguousarray(np.stack([self.sign, self.mask], axis=-2))

    @property
    def border_by_column(self) -> np.ndarray:
        """``border`` as int32 ``(row classes, O padded, OW)``: a row of outputs reads its counts
        contiguously (a vector load where the float epilogue runs along a row, not a gather)."""
        return np.ascontiguousarray(self.border[:, self.col_class, :].transpose(0, 2, 1))


@dataclass(frozen=True)
class FlatInput:
    """The flat input of a real-input conv, in which every tap reads the flat outputs
    ``q = oy * row_stride + ox`` of a channel at ``offset + q`` (``flat_tap_offsets``):

    * channel planes (``shifted`` False): one plane per channel, the zero-padded image split into
      ``sh * sw`` stride phases of ``(Hq, Wq)``; ``row_stride = Wq``, so ``Wq - OW`` columns of
      every output row are computed and dropped;
    * shifted planes (``shifted`` True): one plane per ``(c, kx)``, the padded rows (in ``sh``
      stride phases) at the ``OW`` columns that tap column reads, for ``kw`` times the input.
      Small maps take it (``KernelPolicy.shifted_planes_waste``). ``row_stride`` is ``OW``, or
      ``OW`` rounded up to a cache line where that is cheap (``aligned_row_stride``, the extra
      columns dropped), and a plane of an even number of lines gets one more row, so the planes
      one chunk reads spread over the cache sets.
    """

    shifted: bool
    planes: int
    plane_rows: int
    row_stride: int
    out_height: int

    @property
    def plane_size(self) -> int:
        return self.plane_rows * self.row_stride

    @property
    def flat_outputs(self) -> int:
        return self.out_height * self.row_stride


# A 16-lane vector load at an offset that is not a multiple of 16 floats spans two cache lines and
# costs two loads, and the block-sparse conv is load-bound: shifted-plane rows are rounded up to
# whole (or half) lines where that is cheap (``KernelPolicy.align_waste``).
LINE_FLOATS = 16  # fp32 values per 64-byte cache line


@dataclass(frozen=True)
class BlockSparseConvTables:
    """CSR form of a real-input ternary conv for blocks of output channels: per block and group
    of input channels, the flat offsets of the taps any output of the block keeps, in one segment
    per sign class (``sign_classes``: the block's weights there), so the kernel only adds and
    subtracts and every entry is a kept weight of each output its class names."""

    ptr: np.ndarray  # int32 (groups, blocks * classes + 1): segment (b, k) of group g is index[ptr[g, b * classes + k]:ptr[g, b * classes + k + 1]]
    index: np.ndarray  # (entries,): flat offset of each tap from its group's first plane, uint16 where every group spans at most 2^16 floats, else int32
    group_floats: int  # flat input values per channel group: group g's taps lie at g * group_floats + index


@dataclass(frozen=True)
class BinaryDenseTables:
    """Constants of the XNOR-popcount dense: ``(O/lanes, Kw, lanes)`` words and ``popcount(mask)`` per row."""

    sign: np.ndarray
    mask: np.ndarray
    count: np.ndarray  # int32 (O padded,)


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def pack_words(bits: np.ndarray) -> np.ndarray:
    """Pack booleans along the last axis into ``uint64`` words, LSB first, zero pad bits.

    Bit ``j`` of word ``w`` is element ``64 * w + j`` (the ``uint8`` convention read as
    little-endian words; every target we build for is little-endian).
    """
    bits = np.asarray(bits, bool)
    pad = ceil_div(bits.shape[-1], WORD_BITS) * WORD_BITS - bits.shape[-1]
    bits = np.pad(bits, [(0, 0)] * (bits.ndim - 1) + [(0, pad)])
    return np.ascontiguousarray(np.packbits(bits, axis=-1, bitorder="little")).view("<u8")


def table_outputs(out: int, lanes: int, words_out: bool = False) -> int:
    """Outputs a weight table covers: whole lanes, or whole 64-bit words when the kernel's output
    is packed (each output word needs the counts of 64 channels; the extra rows are all pruned)."""
    unit = WORD_BITS if words_out else lanes
    return ceil_div(out, unit) * unit


def interleave_lanes(rows: np.ndarray, lanes: int, outputs: int | None = None) -> np.ndarray:
    """``(O, *rest)`` -> ``(outputs / lanes, *rest, lanes)``, zero rows appended up to ``outputs``
    (default: whole lanes)."""
    out = outputs or table_outputs(rows.shape[0], lanes)
    rows = np.pad(rows, [(0, out - rows.shape[0])] + [(0, 0)] * (rows.ndim - 1))
    tiled = rows.reshape((out // lanes, lanes) + rows.shape[1:])
    return np.ascontiguousarray(np.moveaxis(tiled, 1, -1))


def ternary_conv_weight(sign_bits: np.ndarray, mask_bits: np.ndarray, geo: ConvGeometry) -> np.ndarray:
    """The ternary weight ``(O, C, kh, kw)`` in {-1, 0, +1} (float32) of a packed BinaryConv."""
    return unpack_ternary(sign_bits, mask_bits, (geo.out_channels, geo.channels, *geo.kernel))


def binary_conv_tables(
    weight: np.ndarray, geo: ConvGeometry, lanes: int, pad_value: float = 0.0, outputs: int | None = None
) -> BinaryConvTables:
    """Words and border table of a ternary conv weight ``(O, C, kh, kw)``.

    Padded taps read activation bits 0, so the kernel's ``D = popcount((a ^ w) & m)`` counts
    ``popcount(w & m)`` there, while a padded tap's true contribution is
    ``p * sum(w) = p * (2 * popcount(w & m) - popcount(m))`` for the pad value ``p``. With
    ``valid`` the taps inside the image at an output position, the exact dot product is
    ``dot = B - 2 * D`` where

        B = sum_{valid taps} popcount(m) + sum_{padded taps} (2 popcount(w & m) + p (2 popcount(w & m) - popcount(m)))

    (``p = 0``: ONNX zero padding of ``sign(x)``), which depends only on which taps are padded:
    one value per (row class, column class).
    """
    keep = np.transpose(weight != 0, (0, 2, 3, 1))  # O, kh, kw, C
    plus = np.transpose(weight > 0, (0, 2, 3, 1))
    row_valid, row_class = _border_classes(
        geo.out_height, geo.height, geo.kernel[0], geo.strides[0], geo.pads[0], geo.dilations[0]
    )
    col_valid, col_class = _border_classes(
        geo.out_width, geo.width, geo.kernel[1], geo.strides[1], geo.pads[1], geo.dilations[1]
    )
    count, plus_count = keep.sum(-1), plus.sum(-1)  # O, kh, kw
    valid = row_valid[:, None, :, None] & col_valid[None, :, None, :]  # RC, CC, kh, kw
    padded_tap = 2 * plus_count + pad_value * (2 * plus_count - count)
    border = np.einsum("rcyx,oyx->rco", valid, count) + np.einsum("rcyx,oyx->rco", ~valid, padded_tap)
    outputs = outputs or table_outputs(geo.out_channels, lanes)
    border = np.pad(border, ((0, 0), (0, 0), (0, outputs - geo.out_channels)))
    return BinaryConvTables(
        sign=interleave_lanes(pack_words(plus), lanes, outputs),
        mask=interleave_lanes(pack_words(keep), lanes, outputs),
        border=np.rint(border).astype(np.int32),
        row_class=row_class,
        col_class=col_class,
    )


def binary_dense_tables(weight: np.ndarray, lanes: int, outputs: int | None = None) -> BinaryDenseTables:
    """Words and ``popcount(mask)`` of a ternary dense weight ``(O, K)``: ``dot = count - 2 * D``."""
    keep = weight != 0
    outputs = outputs or table_outputs(weight.shape[0], lanes)
    count = np.pad(keep.sum(-1), (0, outputs - weight.shape[0]))
    return BinaryDenseTables(
        sign=interleave_lanes(pack_words(weight > 0), lanes, outputs),
        mask=interleave_lanes(pack_words(keep), lanes, outputs),
        count=count.astype(np.int32),
    )


def sign_thresholds(count: np.ndarray, scale: np.ndarray, bias: np.ndarray, taps: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer form of the packed output's bit ``y >= 0``, ``y = scale[o] * (count - 2 D) + bias[o]``,
    for every count ``D`` in ``[0, taps]``: ``bit = (D <= thr) ^ flip[o]``.

    ``y`` is monotone in ``D``, so each output (and border class: ``count`` is ``(..., O')``, ``O'``
    >= ``O`` padded to whole words) has one threshold; ``flip`` is the bit for large ``D`` (scale < 0,
    or scale = 0 and bias >= 0), which makes ``bit ^ flip`` true exactly for ``D <= thr``. The bit
    is the reference's, ``float32(y) >= 0`` with ``y`` in float64, checked on the integers around
    the real-valued crossing rather than derived from it. Padded outputs get bit 0. Returns ``thr``
    int32 shaped like ``count`` and ``flip`` uint64 ``(O',)``, each output's flip at its bit of the
    output word (``flip[c] = f_c << (c % 64)``), so the kernel XORs it in place.
    """
    outputs = count.shape[-1]
    s = np.pad(scale.astype(np.float64), (0, outputs - scale.shape[0]))
    b = np.pad(bias.astype(np.float64), (0, outputs - bias.shape[0]), constant_values=-1.0)
    flip = (s < 0) | ((s == 0) & (b >= 0))

    def below(d: np.ndarray) -> np.ndarray:  # bit(D) ^ flip: true for D <= thr
        return (np.float32((count - 2.0 * d) * s + b) >= 0) ^ flip

    with np.errstate(divide="ignore", invalid="ignore"):
        crossing = np.where(s != 0, (count + b / np.where(s != 0, s, 1.0)) / 2, -2.0)
    guess = np.clip(np.floor(crossing), -2, taps + 2)
    thr = guess - 2 + sum(below(guess + step).astype(np.int64) for step in (-1, 0, 1))
    thr = np.where(s != 0, np.clip(thr, -1, taps), -1)
    return thr.astype(np.int32), flip.astype(np.uint64) << (np.arange(outputs, dtype=np.uint64) % np.uint64(WORD_BITS))


def ternary_planes(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ``plus`` / ``minus`` bit-planes of a ternary weight ``(O, *taps)`` for the dense-ternary
    kernels: ``(*taps, ceil(O / 32))`` uint32 each, bit ``o % 32`` of word ``[*tap, o // 32]`` set
    where ``w[o, *tap]`` is +1 (``plus``) or -1 (``minus``); pad bits are 0 (``w = 0``)."""
    rows = np.moveaxis(np.asarray(weight), 0, -1)
    pad = [(0, 0)] * (rows.ndim - 1) + [(0, ceil_div(rows.shape[-1], PLANE_BITS) * PLANE_BITS - rows.shape[-1])]

    def plane(bits: np.ndarray) -> np.ndarray:
        packed = np.packbits(np.pad(bits, pad), axis=-1, bitorder="little")
        return np.ascontiguousarray(packed).view("<u4")

    return plane(rows > 0), plane(rows < 0)


NIBBLE_OUTPUTS = 4  # outputs per code byte of ``ternary_nibbles``: one NEON float vector


def ternary_nibbles(weight: np.ndarray) -> np.ndarray:
    """The dense-ternary weight as one code byte per ``NIBBLE_OUTPUTS`` outputs per tap: ``(K,
    ceil(O / 4))`` uint8 whose bits 0-3 mark the +1 weights of outputs ``4 i .. 4 i + 3`` and bits
    4-7 their -1 weights (2 bits per weight, as the planes); :data:`NIBBLE_TABLE` decodes a code
    into those 4 weights with one vector load. Pad outputs past ``O`` are 0."""
    rows = np.asarray(weight).reshape(weight.shape[0], -1).T  # K, O
    padded = ceil_div(rows.shape[1], NIBBLE_OUTPUTS) * NIBBLE_OUTPUTS
    rows = np.pad(rows, ((0, 0), (0, padded - rows.shape[1]))).reshape(rows.shape[0], -1, NIBBLE_OUTPUTS)
    bits = 1 << np.arange(NIBBLE_OUTPUTS)
    plus, minus = ((rows > 0) * bits).sum(-1), ((rows < 0) * bits).sum(-1)
    return np.ascontiguousarray(plus | (minus << NIBBLE_OUTPUTS)).astype(np.uint8)


def _nibble_table() -> np.ndarray:
    code = np.arange(256)[:, None]
    lane = np.arange(NIBBLE_OUTPUTS)[None, :]
    return (((code >> lane) & 1) - ((code >> (lane + NIBBLE_OUTPUTS)) & 1)).astype(np.float32)


NIBBLE_TABLE = _nibble_table()
"""``(256, 4)`` float32: row ``c`` is the 4 weights in {-1, 0, +1} that code byte ``c`` stands for."""


INT8_LANES = 16  # int32 sums per vector of the int8 dense kernel (one AVX-512 register)
INT8_STEP = 16  # inputs per 64-byte code vector: 4 codes of 2 bits in each byte


@dataclass(frozen=True)
class Int8Tables:
    """The weight of an int8 layer (``kernels.int8_dense``, ``kernels.int8_conv``): 2-bit codes, and
    the per-output integer offset and float rescale its epilogue folds the zero point and scales into."""

    codes: np.ndarray  # uint8 (ceil(O / 16), ceil(C / 16), *kernel, 64)
    offset: np.ndarray  # int32 (16 * ceil(O / 16),): -zp * sum w[o]
    rescale: np.ndarray  # float32 (O,): activation scale * the layer's scale


def int8_tables(weight: np.ndarray, scale: np.ndarray, input_scale: float, zero_point: int) -> Int8Tables:
    """Codes ``w + 1`` of a ternary weight ``(O, C, *kernel)`` (a dense layer's ``(O, K)``, a conv's
    ``(O, C, kh, kw)``): byte ``4 * lane + i`` of vector ``[o // 16, g, *tap]`` holds in bits
    ``2j, 2j + 1`` the code of output ``o`` (``lane = o % 16``) at input ``16 g + 4 j + i``; pad
    outputs and inputs have code 1 (``w = 0``)."""
    out, channels, *kernel = weight.shape
    blocks, groups = ceil_div(out, INT8_LANES), ceil_div(channels, INT8_STEP)
    codes = np.ones((blocks * INT8_LANES, groups * INT8_STEP, *kernel), np.int64)
    codes[:out, :channels] = np.asarray(weight, np.int64) + 1
    taps = range(5, 5 + len(kernel))
    grid = codes.reshape(blocks, INT8_LANES, groups, 4, 4, *kernel).transpose(
        0, 2, *taps, 1, 4, 3
    )  # b, g, tap, lane, i, j
    packed = (grid << (2 * np.arange(4))).sum(-1).astype(np.uint8).reshape(blocks, groups, *kernel, 4 * INT8_LANES)
    offset = -zero_point * (codes - 1).reshape(blocks * INT8_LANES, -1).sum(1)
    rescale = (np.float32(input_scale) * np.asarray(scale, np.float32)).astype(np.float32)
    return Int8Tables(np.ascontiguousarray(packed), offset.astype(np.int32), rescale)


def sparse_dense_index(weight: np.ndarray, lanes: int) -> np.ndarray:
    """ELL table ``(O/lanes, L, lanes)`` int32 into the sign-split operand ``[x, -x, 0]`` of length ``2K + 1``.

    ``y[o] = sum_j xs[idx[o, j]]`` equals ``sum_{w=+1} x - sum_{w=-1} x``; short rows point at the zero.
    """
    return interleave_lanes(_ell(_sign_split_rows(weight), pad=2 * weight.shape[1]), lanes)


def _sign_split_rows(weight: np.ndarray) -> list[np.ndarray]:
    """Per output, the offsets into ``[x, -x, 0]`` of its +1 weights' inputs, then of its -1 weights'."""
    k = weight.shape[1]
    taps = np.arange(k)
    return [np.concatenate([taps[w > 0], k + taps[w < 0]]) for w in weight]


@dataclass(frozen=True)
class SparseRows:
    """Each output's own list of inputs (CSR) into the sign-split operand ``[x, -x, 0]``:
    ``y[o] = sum_{j in ptr[o]:ptr[o + 1]} xs[index[j]]``, its +1 weights first, each list padded to
    an even length with the zero's offset, so a kernel walks whole pairs."""

    ptr: np.ndarray  # (O + 1,) int32, even
    index: np.ndarray  # (max(entries, 2),) int32: a pair of int32 entries is one load


def sparse_dense_rows(weight: np.ndarray) -> SparseRows:
    """The CSR form of ``sparse_dense_index``, its rows padded to even lengths only: an ELL row is
    as long as the longest output's (at 0.9 sparsity of 512 inputs: 77 entries, 51 on average)."""
    zero = 2 * weight.shape[1]
    rows = [np.pad(r, (0, len(r) % 2), constant_values=zero) for r in _sign_split_rows(weight)]
    ptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int32)
    index = np.concatenate(rows).astype(np.int32) if ptr[-1] else np.full(2, zero, np.int32)
    return SparseRows(ptr, index)


def flat_input(geo: ConvGeometry, policy: KernelPolicy) -> FlatInput:
    """The flat input of a real-input conv: shifted planes where channel planes would drop at
    least ``policy.shifted_planes_waste`` of their flat outputs, else channel planes."""
    (sh, sw), hq, wq = geo.strides, geo.phase_height, geo.phase_width
    # the planes hold row phases outermost, so those no tap reads can be left out (e.g. at a
    # 1x1 stride-2 shortcut, three quarters of the input), and then the column phases too
    row_phases = 1 if _reads_phase_zero(geo, axis=0) else sh
    col_phases = 1 if row_phases == 1 and _reads_phase_zero(geo, axis=1) else sw
    if 1 - geo.out_width / wq >= policy.shifted_planes_waste:
        stride = aligned_row_stride(geo.out_width, policy)
        rows = row_phases * hq + (stride % LINE_FLOATS == 0 and row_phases * hq * stride // LINE_FLOATS % 2 == 0)
        return FlatInput(True, geo.channels * geo.kernel[1], rows, stride, geo.out_height)
    return FlatInput(False, geo.channels, row_phases * col_phases * hq, wq, geo.out_height)


def _reads_phase_zero(geo: ConvGeometry, axis: int) -> bool:
    """Whether every tap offset along ``axis`` (0: rows, 1: columns) is a multiple of the stride:
    the taps read that axis's stride phase 0 alone."""
    stride, dilation = geo.strides[axis], geo.dilations[axis]
    return all(k * dilation % stride == 0 for k in range(geo.kernel[axis]))


def flat_is_input(geo: ConvGeometry, flat: FlatInput, outputs: int) -> bool:
    """Whether the flat input of a conv is its input itself, NCHW flattened: a 1x1 stride-1 conv
    without padding, whose channel planes are the unpadded channels, and whose ``outputs`` (flat
    outputs per channel, whole chunks) end with the plane, so no read passes the last channel.
    The gather then reads the input in place instead of a copy of it."""
    return (
        not flat.shifted
        and geo.kernel == (1, 1)
        and geo.strides == (1, 1)
        and not any(geo.pads)
        and flat.planes == geo.channels
        and (flat.plane_rows, flat.row_stride) == (geo.height, geo.width)
        and outputs == flat.plane_size
    )


def aligned_row_stride(width: int, policy: KernelPolicy) -> int:
    """Row stride of shifted planes: ``width`` rounded up to a whole or half cache line where that
    computes at most ``policy.align_waste`` more outputs, so the vector loads of every tap are aligned."""
    for align in (LINE_FLOATS, LINE_FLOATS // 2):
        stride = ceil_div(width, align) * align
        if stride / width - 1 <= policy.align_waste:
            return stride
    return width


def flat_tap_offsets(geo: ConvGeometry, flat: FlatInput) -> np.ndarray:
    """Offset of each tap ``(c, ky, kx)`` (weight order) into the flat input."""
    (sh, sw), (hq, wq), kw = geo.strides, (geo.phase_height, geo.phase_width), geo.kernel[1]
    cc, ky, kx = np.meshgrid(np.arange(geo.channels), np.arange(geo.kernel[0]), np.arange(kw), indexing="ij")
    dy, dx = ky * geo.dilations[0], kx * geo.dilations[1]
    if flat.shifted:
        offset = (cc * kw + kx) * flat.plane_size + ((dy % sh) * hq + dy // sh) * flat.row_stride
    else:
        offset = cc * flat.plane_size + ((dy % sh) * sw + dx % sw) * hq * wq + (dy // sh) * wq + dx // sw
    return offset.ravel()


def channel_floats(geo: ConvGeometry, flat: FlatInput, chunk: int) -> int:
    """Flat input values one chunk of flat outputs reads from one input channel: its planes, each
    ``chunk`` values plus the rows the kernel's taps reach below."""
    rows_below = (geo.kernel[0] - 1) * geo.dilations[0] // geo.strides[0] + 1
    return flat.planes // geo.channels * (chunk + rows_below * flat.row_stride)


def sign_classes(block: int) -> list[tuple[int, ...]]:
    """Every nonzero pattern of ``block`` ternary weights: the segments of ``block_sparse_conv_tables``."""
    return [c for c in itertools.product((1, -1, 0), repeat=block) if any(c)]


def block_sparse_conv_tables(
    weight: np.ndarray, geo: ConvGeometry, flat: FlatInput, block: int, group: int
) -> BlockSparseConvTables:
    """CSR tables of a ternary conv weight ``(O, C, kh, kw)`` (outputs padded to whole blocks),
    input channels in groups of ``group``.

    Tap ``(c, ky, kx)`` of flat output ``q`` reads ``x[offset + q]`` (``flat_tap_offsets``), so
    ``y[o, q] = sum over segments s of block b (of class w_s, in group g) of w_s[o % block] * sum_{j in s} x[g * group_floats + index[j] + q]``:
    each entry is read once for the block and added to or subtracted from the accumulators of the
    outputs its class keeps. Within a segment the offsets ascend (consecutive reads, nearby lines).

    The index runs group by group, each group's segments block by block: the kernels walk a
    group's slice of the input for consecutive blocks, so each task streams one contiguous run
    of the index per group. Block-major order (a run per block and group) left the hardware
    prefetcher short streams, and on small maps, where each entry feeds a single vector, the index
    is most of what the kernel reads (measured: docs/performance.md). For the same reason offsets
    are kept from their group's first plane, in 16 bits where a group spans at most 2^16 floats
    (the L1-sized groups of every CIFAR ResNet shape).
    """
    offset = flat_tap_offsets(geo, flat)
    taps_per_channel = geo.kernel[0] * geo.kernel[1]
    classes = sign_classes(block)
    digits = 3 ** np.arange(block)  # a pattern as a base-3 number, -1 as digit 2
    class_of = np.zeros(3**block, np.int64)
    class_of[[int(np.dot(np.mod(c, 3), digits)) for c in classes]] = np.arange(len(classes))
    blocks, groups = ceil_div(geo.out_channels, block), ceil_div(geo.channels, group)
    rows = weight.reshape(geo.out_channels, -1).astype(np.int8)
    rows = np.pad(rows, ((0, blocks * block - geo.out_channels), (0, 0))).reshape(blocks, block, -1)
    block_of, tap = np.nonzero(np.any(rows != 0, axis=1))  # (block, tap) of every entry, block-major
    group_of = tap // taps_per_channel // group
    pattern = np.mod(rows[block_of, :, tap], 3) @ digits
    segment = (group_of * blocks + block_of) * len(classes) + class_of[pattern]
    order = np.lexsort((offset[tap], segment))
    segments_per_group = blocks * len(classes)
    starts = np.concatenate([[0], np.cumsum(np.bincount(segment, minlength=groups * segments_per_group))])
    ptr = np.stack([starts[g * segments_per_group : (g + 1) * segments_per_group + 1] for g in range(groups)])
    group_floats = group * flat.planes // geo.channels * flat.plane_size
    entries = (offset[tap] - group_of * group_floats)[order]
    dtype = np.uint16 if group_floats <= 2**16 else np.int32
    return BlockSparseConvTables(
        ptr.astype(np.int32), np.pad(entries, (0, entries.size == 0)).astype(dtype), group_floats
    )


def lut_plane_count(group: int) -> int:
    """Lookup planes of a ``group``-channel group: its nonzero ternary patterns up to sign, ``(3^group - 1) / 2``."""
    return (3**group - 1) // 2


def lut_patterns(group: int) -> np.ndarray:
    """``(P, group)`` int8, ``P = lut_plane_count(group)``: the nonzero ternary patterns of ``group``
    weights whose first nonzero weight is +1 (every other nonzero pattern is one of them negated),
    pattern ``p`` being the balanced-ternary digits of ``p + 1``, most significant first."""
    count = lut_plane_count(group)
    digits = np.zeros((count, group), np.int8)
    value = np.arange(1, count + 1)
    for i in reversed(range(group)):
        digit = (value + 1) % 3 - 1
        digits[:, i] = digit
        value = (value - digit) // 3
    return digits


def lut_conv_weight(weight: np.ndarray, group: int) -> np.ndarray:
    """A ternary conv weight ``(O, C, kh, kw)`` over the lookup planes of ``group``-channel groups:
    ``(O, G * P, kh, kw)`` (``G = ceil(C / group)``, ``P`` patterns of ``lut_patterns``), where
    virtual channel ``g * P + p`` holds ``s`` at a tap whose ``group`` weights in group ``g`` are
    ``s`` times pattern ``p``: at most one nonzero among the ``P`` planes of a group per tap, so
    the block-sparse conv over the planes adds once per nonzero group where it added once per
    nonzero weight."""
    out, channels, kh, kw = weight.shape
    groups, count = ceil_div(channels, group), lut_plane_count(group)
    grouped = np.pad(weight.astype(np.int64), ((0, 0), (0, groups * group - channels), (0, 0), (0, 0)))
    value = np.einsum("ogikl,i->ogkl", grouped.reshape(out, groups, group, kh, kw), 3 ** np.arange(group)[::-1])
    lut = np.zeros((out, groups, count, kh, kw), np.int8)
    o, g, ky, kx = np.nonzero(value)
    lut[o, g, np.abs(value[o, g, ky, kx]) - 1, ky, kx] = np.sign(value[o, g, ky, kx])
    return lut.reshape(out, groups * count, kh, kw)


def _ell(rows: list[np.ndarray], pad: int) -> np.ndarray:
    width = max(1, max(len(r) for r in rows))
    table = np.full((len(rows), width), pad, np.int32)
    for i, r in enumerate(rows):
        table[i, : len(r)] = np.sort(r)
    return table


def _border_classes(
    out: int, size: int, taps: int, stride: int, pad: int, dilation: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per output row: which taps fall inside the image, deduplicated into classes.

    Returns ``(valid (classes, taps) bool, class_of_output (out,) int32)``.
    """
    pos = np.arange(out)[:, None] * stride + np.arange(taps)[None, :] * dilation - pad
    valid, index = np.unique((pos >= 0) & (pos < size), axis=0, return_inverse=True)
    return valid, index.reshape(-1).astype(np.int32)
