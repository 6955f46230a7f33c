"""Weight re-layout: bit order within uint64 words, lane interleave, border table, ELL tables."""

import dataclasses
import itertools

import numpy as np
import pytest

from mptc.conventions import pack_bits
from mptc.targets import layout
from mptc.targets.policy import default_policy

POLICY = default_policy("x86")


def test_words_keep_the_uint8_lsb_first_order():
    bits = np.random.default_rng(0).random((3, 130)) < 0.5
    words = layout.pack_words(bits)
    assert words.shape == (3, 3) and words.dtype == np.uint64
    np.testing.assert_array_equal(words.view(np.uint8)[:, :17], pack_bits(bits))
    assert int(words[0, 0] >> np.uint64(5)) & 1 == bits[0, 5]


def test_interleave_pads_outputs_to_whole_lanes():
    rows = np.arange(5 * 2).reshape(5, 2)
    tiled = layout.interleave_lanes(rows, 4)
    assert tiled.shape == (2, 2, 4)
    assert tiled[1, 1, 0] == rows[4, 1] and tiled[1, 0, 3] == 0


def test_border_table_matches_brute_force_zero_padding():
    rng = np.random.default_rng(1)
    geo = layout.ConvGeometry(1, 3, 5, 6, 2, (3, 3), strides=(2, 1), pads=(1, 1, 1, 1))
    weight = rng.choice([-1.0, 0.0, 1.0], size=(2, 3, 3, 3))
    t = layout.binary_conv_tables(weight, geo, lanes=2)
    x = np.pad(np.ones((3, geo.height, geo.width)), ((0, 0), (1, 1), (1, 1)))  # +1 inside, 0 in the padding
    mask_inside = np.pad(np.ones((geo.height, geo.width)), 1)
    for oy in range(geo.out_height):
        for ox in range(geo.out_width):
            window = x[:, 2 * oy : 2 * oy + 3, ox : ox + 3]
            dot = (window * weight).sum((1, 2, 3))
            # the kernel sees -1 (bit 0) in the padding: D counts taps where sign(a) != sign(w)
            bits = np.where(mask_inside[2 * oy : 2 * oy + 3, ox : ox + 3], 1.0, -1.0)
            d = ((weight != 0) & ((bits[None, None] > 0) != (weight > 0))).sum((1, 2, 3))
            np.testing.assert_array_equal(t.border[t.row_class[oy], t.col_class[ox], :2] - 2 * d, dot)
            np.testing.assert_array_equal(t.border_by_column[t.row_class[oy], :2, ox] - 2 * d, dot)


def test_sparse_dense_index_points_into_sign_split_operand():
    weight = np.array([[1.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    index = layout.sparse_dense_index(weight, lanes=2)
    assert index.shape == (1, 2, 2)
    np.testing.assert_array_equal(index[0, :, 0], [0, 5])  # x[0] and -x[2] (offset K + 2)
    np.testing.assert_array_equal(index[0, :, 1], [6, 6])  # an empty row reads the zero slot


def test_sparse_dense_rows_list_each_output_padded_to_pairs_with_the_zero():
    weight = np.array([[1.0, 0.0, -1.0], [0.0, 0.0, 0.0], [-1.0, 1.0, 1.0]])
    rows = layout.sparse_dense_rows(weight)
    np.testing.assert_array_equal(rows.ptr, [0, 2, 2, 6])  # an empty output has no entries
    np.testing.assert_array_equal(rows.index, [0, 5, 1, 2, 3, 6])  # +1 inputs, then -x offsets K + j; 6 the zero
    assert rows.index.dtype == np.int32
    empty = layout.sparse_dense_rows(np.zeros((2, 3)))
    np.testing.assert_array_equal(empty.ptr, [0, 0, 0])
    assert len(empty.index) == 2  # a constant of no elements is not kept; nothing reads it


def _flat_values(padded: np.ndarray, geo: layout.ConvGeometry, flat: layout.FlatInput) -> np.ndarray:
    """The flat input of ``layout.FlatInput`` from the zero-padded image ``(C, Hq * sh, Wq * sw)``,
    zeros in the columns and rows that only pad a plane, and two zero planes of tail; of the
    stride phases, those the planes hold (the first)."""
    (sh, sw), hq, wq = geo.strides, geo.phase_height, geo.phase_width
    c, ow, kw = geo.channels, geo.out_width, geo.kernel[1]
    if flat.shifted:  # (c, kx, py, qy, ox)
        columns = np.stack(
            [padded[:, :, kx * geo.dilations[1] : kx * geo.dilations[1] + sw * ow : sw] for kx in range(kw)], axis=1
        )
        planes = columns.reshape(c * kw, hq, sh, ow).transpose(0, 2, 1, 3).reshape(c * kw, sh * hq, ow)
    else:  # (c, py, px, qy, qx)
        planes = padded.reshape(c, hq, sh, wq, sw).transpose(0, 2, 4, 1, 3).reshape(c, sh * sw * hq, wq)
    rows = min(planes.shape[1], flat.plane_rows)  # phases outermost: the planes keep the first ones the taps read
    framed = np.zeros((flat.planes, flat.plane_rows, flat.row_stride))
    framed[:, :rows, : planes.shape[2]] = planes[:, :rows]
    return np.concatenate([framed.reshape(-1), np.zeros(2 * flat.plane_size)])


def _walk_segments(
    t: layout.BlockSparseConvTables, geo: layout.ConvGeometry, flat: layout.FlatInput, block: int, xs: np.ndarray
) -> np.ndarray:
    """What a kernel computes from the tables: each entry added with its sign class's signs to the
    outputs of its block, at every real output ``(oy, ox)``."""
    classes = layout.sign_classes(block)
    blocks = (t.ptr.shape[1] - 1) // len(classes)
    oy, ox = np.meshgrid(np.arange(geo.out_height), np.arange(geo.out_width), indexing="ij")
    got = np.zeros((blocks * block, geo.out_height, geo.out_width))
    for g, group_ptr in enumerate(t.ptr):
        for s in range(blocks * len(classes)):
            b = s // len(classes)
            for j in range(group_ptr[s], group_ptr[s + 1]):
                at = g * t.group_floats + int(t.index[j])
                got[b * block : b * block + block] += np.multiply.outer(
                    classes[s % len(classes)], xs[at + oy * flat.row_stride + ox]
                )
    return got


def _conv3x3(weight: np.ndarray, padded: np.ndarray, size: int) -> np.ndarray:
    """Stride-1 3x3 conv of an image zero-padded by one, ``size x size`` outputs."""
    return sum(
        np.einsum("oc,cyx->oyx", weight[:, :, ky, kx], padded[:, ky : ky + size, kx : kx + size])
        for ky in range(3)
        for kx in range(3)
    )


@pytest.mark.parametrize("waste", [0.0, 1.0], ids=["shifted-planes", "channel-planes"])
@pytest.mark.parametrize("block, group", [(1, 3), (2, 1), (3, 2)], ids=["block1", "block2-group1", "block3-group2"])
def test_block_sparse_conv_tables_read_the_flat_input_exactly(block, group, waste):
    """Uneven strides, a dilation, uneven pads, blocks that do not divide the outputs and channel
    groups that do not divide the channels, in both flat layouts: walking the CSR segments (each
    entry added with its sign class's sign to each output of its block) gives the conv."""
    rng = np.random.default_rng(3)
    geo = layout.ConvGeometry(1, 3, 7, 8, 5, kernel=(3, 2), strides=(2, 3), pads=(1, 0, 2, 1), dilations=(2, 1))
    weight = rng.choice([-1.0, 0.0, 1.0], size=(5, 3, 3, 2))
    x = rng.standard_normal((3, 7, 8))
    (sh, sw), hq, wq = geo.strides, geo.phase_height, geo.phase_width
    oh, ow = geo.out_height, geo.out_width
    padded = np.zeros((3, hq * sh, wq * sw))
    padded[:, 1:8, 0:8] = x
    taps = [
        padded[:, 2 * ky : 2 * ky + sh * oh : sh, kx : kx + sw * ow : sw] for ky in range(3) for kx in range(2)
    ]  # (c, OH, OW) each
    flat = layout.flat_input(geo, dataclasses.replace(POLICY, shifted_planes_waste=waste))
    assert flat.shifted == (waste == 0.0)
    t = layout.block_sparse_conv_tables(weight, geo, flat, block, group)
    blocks, groups = -(-5 // block), -(-3 // group)
    assert t.ptr.shape == (groups, blocks * len(layout.sign_classes(block)) + 1) and t.ptr[-1, -1] == t.index.size
    assert t.index.size == sum(np.any(weight[b * block : b * block + block] != 0, axis=0).sum() for b in range(blocks))
    got = _walk_segments(t, geo, flat, block, _flat_values(padded, geo, flat))
    expected = sum(
        np.einsum("oc,cyx->oyx", weight[:, :, ky, kx], taps[ky * 2 + kx]) for ky in range(3) for kx in range(2)
    )
    np.testing.assert_allclose(got[:5], expected, atol=1e-12)
    np.testing.assert_array_equal(got[5:], 0)


@pytest.mark.parametrize(
    "kernel, dilation, row_phases, phases",
    [((1, 1), 1, 1, 1), ((3, 3), 2, 1, 1), ((1, 3), 1, 1, 2), ((3, 3), 1, 2, 4), ((3, 1), 1, 2, 4)],
    ids=["1x1", "3x3-dilated-2", "1x3", "3x3", "3x1"],
)
@pytest.mark.parametrize("waste", [0.0, 1.0], ids=["shifted-planes", "channel-planes"])
def test_strided_flat_planes_hold_only_the_phases_the_taps_read(kernel, dilation, row_phases, phases, waste):
    """At stride 2, a 1x1 conv (a ResNet shortcut) and a 3x3 dilated by 2 read stride phase (0, 0)
    alone: their planes hold that phase, a quarter of the input, where all four were copied (and
    a lookup conv summed every copied value); a 1x3 conv reads the first row phase only. Shifted
    planes hold row phases only (a plane per tap column); channel planes hold the row phases
    outermost, so a 3x1 conv keeps all four."""
    geo = layout.ConvGeometry(
        1, 3, 16, 16, 5, kernel=kernel, strides=(2, 2), pads=(1, 1, 1, 1), dilations=(dilation,) * 2
    )
    flat = layout.flat_input(geo, dataclasses.replace(POLICY, shifted_planes_waste=waste))
    if flat.shifted:  # one more row where a plane of whole cache lines would be an even number of them
        assert flat.plane_rows - row_phases * geo.phase_height in (0, 1)
    else:
        assert flat.plane_rows == phases * geo.phase_height


@pytest.mark.parametrize("width, stride", [(14, 16), (15, 16), (7, 8), (13, 13), (12, 12), (4, 4)])
def test_shifted_planes_align_rows_to_cache_lines_where_cheap(width, stride):
    """Rows of 14 or 15 outputs are laid 16 floats apart (a 64-byte line, so every tap's vector
    loads are aligned), 7 at 8 (half a line); 12 and 4 would compute a third more or double and
    keep their width, as 13 (a fifth more). A plane of an even number of lines gains a row, so the planes a chunk reads
    do not all fall in the same cache sets. The tables still read the conv exactly."""
    rng = np.random.default_rng(width)
    geo = layout.ConvGeometry(1, 2, width, width, 3, kernel=(3, 3), pads=(1, 1, 1, 1))
    flat = layout.flat_input(geo, POLICY)
    assert flat.shifted and flat.row_stride == stride
    if stride % layout.LINE_FLOATS == 0:
        assert flat.plane_size % layout.LINE_FLOATS == 0 and flat.plane_size // layout.LINE_FLOATS % 2 == 1
    weight = rng.choice([-1.0, 0.0, 1.0], size=(3, 2, 3, 3))
    x = rng.standard_normal((2, width, width))
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    t = layout.block_sparse_conv_tables(weight, geo, flat, 2, 1)
    got = _walk_segments(t, geo, flat, 2, _flat_values(padded, geo, flat))
    expected = _conv3x3(weight, padded, width)
    np.testing.assert_allclose(got[:3], expected, atol=1e-12)


def test_block_sparse_conv_index_runs_group_then_block():
    """The index lies in the order a task walks it: one channel group's segments for every
    block, then the next group's, so a task's blocks read one contiguous run per group (a run
    per block and group left the hardware prefetcher short streams: 512@4x4 cold 410 -> 295 us).
    Segment ``(b, k)`` of group ``g`` holds exactly the taps of that group whose block weights
    are class ``k``."""
    geo = layout.ConvGeometry(1, 4, 5, 5, 4, kernel=(1, 1))
    weight = np.zeros((4, 4, 1, 1))
    weight[0:2, 0, 0, 0] = (1, -1)  # block 0, group 0, class (1, -1)
    weight[0:2, 3, 0, 0] = (0, 1)  # block 0, group 1, class (0, 1)
    weight[2:4, 1, 0, 0] = (1, 0)  # block 1, group 0, class (1, 0)
    weight[2:4, 2, 0, 0] = (-1, -1)  # block 1, group 1, class (-1, -1)
    flat = layout.flat_input(geo, POLICY)
    t = layout.block_sparse_conv_tables(weight, geo, flat, 2, 2)
    classes = layout.sign_classes(2)

    def segment(g, b, signs):
        k = b * len(classes) + classes.index(signs)
        return [g * t.group_floats + int(i) for i in t.index[t.ptr[g, k] : t.ptr[g, k + 1]]]

    assert t.group_floats == 2 * flat.plane_size
    assert t.ptr[0, -1] == t.ptr[1, 0] == 2 and t.ptr[1, -1] == t.index.size == 4
    assert [segment(0, 0, (1, -1)), segment(0, 1, (1, 0)), segment(1, 0, (0, 1)), segment(1, 1, (-1, -1))] == [
        [0],
        [flat.plane_size],
        [3 * flat.plane_size],
        [2 * flat.plane_size],
    ]
    np.testing.assert_array_equal(t.index, np.array([0, 1, 1, 0]) * flat.plane_size)  # from each group's first plane


@pytest.mark.parametrize(
    "channels, size, group, dtype",
    [(512, 4, 97, np.uint16), (128, 16, 15, np.uint16), (64, 32, 49, np.uint16), (64, 32, 64, np.int32)],
)
def test_block_sparse_conv_index_is_16_bit_where_groups_span_at_most_2_16_floats(channels, size, group, dtype):
    """The L1-sized groups of the CIFAR ResNet shapes span fewer than 2^16 flat values, so their
    offsets (from the group's first plane) take 2 bytes; all 64 channels of a 32x32 map in one
    group keep 4. Either way the tables still read the conv exactly."""
    rng = np.random.default_rng(size)
    geo = layout.ConvGeometry(1, channels, size, size, 2, kernel=(3, 3), pads=(1, 1, 1, 1))
    weight = rng.choice([-1.0, 0.0, 1.0], size=(2, channels, 3, 3), p=[0.01, 0.98, 0.01])
    flat = layout.flat_input(geo, POLICY)
    t = layout.block_sparse_conv_tables(weight, geo, flat, 2, group)
    assert t.index.dtype == dtype and (t.group_floats <= 2**16) == (dtype == np.uint16)
    x = rng.standard_normal((channels, size, size))
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    got = _walk_segments(t, geo, flat, 2, _flat_values(padded, geo, flat))
    expected = _conv3x3(weight, padded, size)
    np.testing.assert_allclose(got, expected, atol=1e-12)


def test_sign_thresholds_give_the_reference_bit_for_every_count():
    rng = np.random.default_rng(3)
    taps, outputs, padded = 90, 70, 128
    count = rng.integers(0, taps + 1, (3, 3, padded)).astype(np.int32)
    scale = (rng.standard_normal(outputs) * 10.0 ** rng.uniform(-6, 3, outputs)).astype(np.float32)
    scale[::9] = 0.0
    bias = (rng.standard_normal(outputs) * 20).astype(np.float32)
    on_zero = rng.random(outputs) < 0.4  # y = 0 exactly at some count: sign(0) = +1
    bias[on_zero] = (-scale * (count[0, 0, :outputs] - 2 * rng.integers(0, taps, outputs)))[on_zero]
    thr, flip = layout.sign_thresholds(count, scale, bias, taps)
    d = np.arange(taps + 1)[:, None, None, None]
    y = (count - 2.0 * d) * np.pad(scale.astype(np.float64), (0, padded - outputs)) + np.pad(
        bias.astype(np.float64), (0, padded - outputs)
    )
    expected = np.float32(y) >= 0  # the reference: float64 maths, float32 output, sign(0) = +1
    expected[..., outputs:] = False  # padded outputs: bit 0
    flip_bits = (flip >> (np.arange(padded, dtype=np.uint64) % np.uint64(64))) & np.uint64(1)
    assert flip.dtype == np.uint64 and thr.dtype == np.int32 and thr.shape == count.shape
    np.testing.assert_array_equal((d <= thr) ^ flip_bits.astype(bool), expected)


@pytest.mark.parametrize("group", [1, 2, 3, 4])
def test_lut_patterns_are_every_nonzero_pattern_up_to_sign(group):
    patterns = layout.lut_patterns(group)
    assert patterns.shape == ((3**group - 1) // 2, group)
    first = patterns[np.arange(len(patterns)), np.argmax(patterns != 0, axis=1)]
    assert (first == 1).all()
    both = {tuple(p) for p in patterns} | {tuple(-p) for p in patterns}
    assert both == set(itertools.product((-1, 0, 1), repeat=group)) - {(0,) * group}


@pytest.mark.parametrize("group, channels", [(3, 7), (3, 9), (2, 5), (4, 4)])
def test_lut_conv_weight_sums_back_to_the_weight(group, channels):
    """Each group's planes hold one signed pattern per tap: expanding them gives the weight back,
    and a group of zero weights keeps no entry."""
    rng = np.random.default_rng(group)
    weight = rng.integers(-1, 2, (5, channels, 3, 2)).astype(np.int8)
    weight[:, :group] = 0
    lut = layout.lut_conv_weight(weight, group)
    count = (3**group - 1) // 2
    groups = -(-channels // group)
    per_group = lut.reshape(5, groups, count, 3, 2)
    assert (np.abs(per_group).sum(axis=2) <= 1).all() and not per_group[:, 0].any()
    expanded = np.einsum("ogpkl,pi->ogikl", per_group.astype(np.int64), layout.lut_patterns(group))
    assert np.array_equal(expanded.reshape(5, groups * group, 3, 2)[:, :channels], weight)
    assert not expanded.reshape(5, groups * group, 3, 2)[:, channels:].any()
