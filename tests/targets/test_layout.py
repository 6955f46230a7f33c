"""Weight re-layout: bit order within uint64 words, lane interleave, border table, ELL tables."""

import numpy as np
import pytest

from mptc.conventions import pack_bits
from mptc.targets import layout


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


def test_sparse_dense_index_points_into_sign_split_operand():
    weight = np.array([[1.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    index = layout.sparse_dense_index(weight, lanes=2)
    assert index.shape == (1, 2, 2)
    np.testing.assert_array_equal(index[0, :, 0], [0, 5])  # x[0] and -x[2] (offset K + 2)
    np.testing.assert_array_equal(index[0, :, 1], [6, 6])  # an empty row reads the zero slot


@pytest.mark.parametrize("waste", [0.0, 1.0], ids=["shifted-planes", "channel-planes"])
@pytest.mark.parametrize("block", [0, 1, 2, 3], ids=["signed", "block1", "block2", "block3"])
def test_block_sparse_conv_tables_read_the_flat_input_exactly(block, waste, monkeypatch):
    """Uneven strides, a dilation, uneven pads and blocks that do not divide the outputs, in both
    flat layouts: the tap offsets and the block values give the conv."""
    monkeypatch.setattr(layout, "SHIFTED_PLANES_WASTE", waste)
    rng = np.random.default_rng(3)
    geo = layout.ConvGeometry(1, 3, 7, 8, 5, kernel=(3, 2), strides=(2, 3), pads=(1, 0, 2, 1), dilations=(2, 1))
    weight = rng.choice([-1.0, 0.0, 1.0], size=(5, 3, 3, 2))
    x = rng.standard_normal((3, 7, 8))
    (sh, sw), hq, wq = geo.strides, geo.phase_height, geo.phase_width
    oh, ow = geo.out_height, geo.out_width
    padded = np.zeros((3, hq * sh, wq * sw))
    padded[:, 1:8, 0:8] = x
    taps = [padded[:, 2 * ky : 2 * ky + sh * oh : sh, kx : kx + sw * ow : sw] for ky in range(3) for kx in range(2)]  # (c, OH, OW) each
    flat = layout.flat_input(geo, signed=block == 0)
    assert flat.shifted == (waste == 0.0)
    if flat.shifted:  # (c, kx, py, qy, ox)
        columns = np.stack([padded[:, :, kx : kx + sw * ow : sw] for kx in range(2)], axis=1)  # (c, kx, Hp, OW)
        planes = columns.reshape(3, 2, hq, sh, ow).transpose(0, 1, 3, 2, 4)
    else:  # (c, py, px, qy, qx)
        planes = padded.reshape(3, hq, sh, wq, sw).transpose(0, 2, 4, 1, 3)
    signs = [planes, -planes] if flat.signed else [planes]
    xs = np.concatenate([p.reshape(-1) for p in signs] + [np.zeros(2 * flat.plane_size)])
    t = layout.block_sparse_conv_tables(weight, geo, flat, max(block, 1))
    oy, ox = np.meshgrid(np.arange(oh), np.arange(ow), indexing="ij")
    gathered = xs[t.index[:, :, None, None] + oy * flat.row_stride + ox]  # (blocks, L, OH, OW)
    if flat.signed:
        assert t.values is None
        got = gathered.sum(1)
    else:
        assert t.index.shape[0] == -(-5 // block) and t.values.shape == (*t.index.shape, block)
        got = np.einsum("bji,bjyx->biyx", t.values, gathered).reshape(-1, oh, ow)[:5]
    expected = sum(np.einsum("oc,cyx->oyx", weight[:, :, ky, kx], taps[ky * 2 + kx]) for ky in range(3) for kx in range(2))
    np.testing.assert_allclose(got, expected, atol=1e-12)
