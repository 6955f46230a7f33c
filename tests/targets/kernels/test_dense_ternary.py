"""The dense-ternary kernels (2-bit weight planes decoded in the kernel) vs ``mptc.ops.reference``."""

import dataclasses

import numpy as np
import pytest

from mptc.targets import chooser, layout
from mptc.targets.compile import compile_model
from mptc.targets.kernels import dense_ternary
from mptc.targets.policy import default_policy
from mptc.targets.schedules.arm import NEON_TILES
from mptc.targets.schedules.cpu import CpuKernelSchedules
from mptc.targets.schedules.x86 import AVX2_TILES, AVX512_TILES

from ..harness import compile_x86, reference, relative_error, run, sample
from ..packed_models import GraphBuilder, binary_conv_model, binary_dense_model, residual_block, ternary

# (batch, K, out): outputs below one vector, off and on whole plane words (32) and vectors; batches
# below, at and past a register tile's rows
CASES = [(1, 100, 13), (1, 64, 32), (3, 37, 45), (5, 200, 64), (19, 70, 33), (8, 512, 512)]


@pytest.mark.parametrize("batch, k, out", CASES)
def test_dense_ternary_matches_reference(batch, k, out):
    model = binary_dense_model(np.random.default_rng(11), batch, k, out, mode="real", sparsity=0.3)
    vm, lowering = compile_x86(model)
    x = sample(model)
    [layer] = lowering.layers
    assert layer.kernel == chooser.DENSE_TERNARY and "2-bit weight planes" in layer.reason
    assert relative_error(run(vm, x), reference(model, x)) < 1e-5


@pytest.mark.parametrize("tiles", [AVX2_TILES, NEON_TILES], ids=["avx2", "neon"])
def test_dense_ternary_with_other_families_tiles(tiles):
    """AVX2's 8 and NEON's 4 lanes split a plane word into 4 and 8 vectors (run on this host)."""
    model = binary_dense_model(np.random.default_rng(12), 3, 90, 45, mode="real", sparsity=0.2)
    vm, lowering = compile_x86(model, kernels=CpuKernelSchedules(tiles))
    x = sample(model)
    assert lowering.layers[0].kernel == chooser.DENSE_TERNARY
    assert relative_error(run(vm, x), reference(model, x)) < 1e-5


def test_dense_ternary_keeps_two_bits_per_weight():
    """The constants the kernel reads are the two planes plus scale and bias, not an fp32 weight."""
    batch, k, out = 1, 300, 70
    model = binary_dense_model(np.random.default_rng(13), batch, k, out, mode="real", sparsity=0.1)
    _, lowering = compile_x86(model)
    [layer] = lowering.layers
    planes = 2 * k * layout.ceil_div(out, layout.PLANE_BITS) * 4
    assert layer.lowered_bytes == planes + 2 * 4 * out
    assert layer.lowered_bytes < 4 * k * out / 8


def test_a_policy_without_dense_ternary_takes_the_fp32_matmul():
    model = binary_dense_model(np.random.default_rng(14), 2, 50, 20, mode="real", sparsity=0.2)
    policy = dataclasses.replace(default_policy("x86"), dense_ternary=frozenset())
    vm, lowering = compile_x86(model, policy=policy)
    x = sample(model)
    assert lowering.layers[0].kernel == chooser.DENSE_FP32
    assert relative_error(run(vm, x), reference(model, x)) < 1e-5


def test_ternary_planes_decode_to_the_weight():
    weight = np.random.default_rng(15).choice([-1.0, 0.0, 1.0], size=(40, 3, 2)).astype(np.float32)
    plus, minus = layout.ternary_planes(weight)
    assert plus.shape == minus.shape == (3, 2, 2) and plus.dtype == np.uint32
    o = np.arange(40)

    def bit(plane: np.ndarray) -> np.ndarray:
        return (plane[..., o // 32] >> (o % 32).astype(np.uint32)) & 1

    assert not np.any(bit(plus) & bit(minus))
    np.testing.assert_array_equal(np.moveaxis(bit(plus).astype(int) - bit(minus).astype(int), -1, 0), weight)
    assert not np.any(plus[..., 1] >> np.uint32(8)) and not np.any(minus[..., 1] >> np.uint32(8))  # pad bits 0


# (batch, C, size, O, k, stride, pad): channels off whole vectors and plane words, stride 2, 1x1,
# maps below and above the decode-block size, batch 2; rows of whole vectors (16 and 32 wide, the
# vectors along the columns) with channels off whole vectors, one or two vectors a row, 3x3 and 1x1
# every 1x1 conv below the break-even takes a dense-ternary kernel, whatever its map
POINTWISE_ALWAYS = dataclasses.replace(default_policy("x86"), pointwise_ternary_min_outputs=1)

# (batch, channels, size, out, kernel, stride, pad); an unpadded 1x1 conv is the pointwise kernel's
# (below), a padded one this kernel's
CONV_CASES = [
    (1, 3, 7, 5, 3, 1, 1),
    (2, 70, 9, 13, 3, 2, 1),
    (1, 5, 8, 3, 1, 2, 1),
    (1, 16, 4, 40, 3, 1, 1),
    (2, 6, 12, 33, 3, 1, 1),
    (1, 9, 17, 17, 3, 2, 0),
    (1, 5, 16, 20, 3, 1, 1),
    (2, 3, 32, 17, 3, 1, 1),
]


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "n{}c{}s{}o{}k{}st{}p{}".format(*c))
@pytest.mark.parametrize("decode_block_pixels", [1, 10**6], ids=["block", "registers"])
def test_conv_ternary_matches_reference(case, decode_block_pixels):
    """Every map with the weights decoded once per task into a block, and decoded in registers."""
    policy = dataclasses.replace(POINTWISE_ALWAYS, decode_block_pixels=decode_block_pixels)
    model = binary_conv_model(np.random.default_rng(16), *case, mode="real", sparsity=0.2)
    vm, lowering = compile_x86(model, policy=policy)
    x = sample(model)
    assert lowering.layers[0].kernel == chooser.DENSE_TERNARY
    assert relative_error(run(vm, x), reference(model, x)) < 1e-5


@pytest.mark.parametrize("tiles", [AVX2_TILES, NEON_TILES], ids=["avx2", "neon"])
@pytest.mark.parametrize("size", [10, 16], ids=["channel-vectors", "column-vectors"])
def test_conv_ternary_with_other_families_tiles(tiles, size):
    model = binary_conv_model(np.random.default_rng(17), 2, 7, size, 21, 3, 1, 1, mode="real", sparsity=0.2)
    vm, lowering = compile_x86(model, kernels=CpuKernelSchedules(tiles))
    x = sample(model)
    assert lowering.layers[0].kernel == chooser.DENSE_TERNARY
    assert relative_error(run(vm, x), reference(model, x)) < 1e-5


@pytest.mark.parametrize(
    "size, stride, columns",
    [(32, 1, True), (16, 1, True), (14, 1, False), (8, 1, False), (32, 2, False)],
)
def test_conv_ternary_vectors_run_along_rows_of_whole_vectors(size, stride, columns):
    """Stride 1 and rows of whole vectors (AVX-512: 16 and 32 wide): the accumulators are runs of
    columns, ``(n, y, o, x)``; otherwise runs of output channels, ``(n, y, x, o)``."""
    geo = layout.ConvGeometry(1, 8, size, size, 48, (3, 3), (stride, stride), (1, 1, 1, 1))
    func = dense_ternary.conv_ternary_func(geo, AVX512_TILES.float_lanes)
    script = CpuKernelSchedules(AVX512_TILES).conv_ternary(func).script()
    side = geo.out_width
    by_columns = f"T.sblock_alloc_buffer((1, {side}, 48, {side})" in script
    by_channels = f"T.sblock_alloc_buffer((1, {side}, {side}, 48)" in script
    assert (by_columns, by_channels) == (columns, not columns)


def test_conv_ternary_fuses_residual_add_and_relu():
    model = residual_block(np.random.default_rng(18), "real", sparsity=0.1, size=9)
    vm, lowering = compile_x86(model)
    assert [layer.kernel for layer in lowering.layers] == [chooser.DENSE_TERNARY] * 3
    assert [layer.epilogue for layer in lowering.layers] == ["add+relu", "add", "relu"]
    x = sample(model)
    assert relative_error(run(vm, x), reference(model, x)) < 1e-5


def test_conv_ternary_keeps_two_bits_per_weight():
    model = binary_conv_model(np.random.default_rng(19), 1, 64, 8, 48, 3, 1, 1, mode="real", sparsity=0.1)
    _, lowering = compile_x86(model)
    [layer] = lowering.layers
    assert layer.lowered_bytes == 2 * 64 * 9 * layout.ceil_div(48, layout.PLANE_BITS) * 4 + 2 * 4 * 48


@pytest.mark.parametrize("target", ["arm", "cuda"])
def test_dense_ternary_builds_for_arm_and_cuda(tmp_path, target):
    """Both dense-ternary kernels have a schedule on every target family (run: the emulated ARM tests),
    arm's convs where its policy leaves the lookup conv off."""
    model = residual_block(np.random.default_rng(20), "real", sparsity=0.1, size=9)
    policy = dataclasses.replace(default_policy(target), lut_below=None)
    manifest = compile_model(model, target, tmp_path, policy=policy)
    assert {layer["kernel"] for layer in manifest["layers"]} == {chooser.DENSE_TERNARY}
    assert (tmp_path / "module.so").is_file()
    dense = binary_dense_model(np.random.default_rng(21), 2, 70, 45, mode="real", sparsity=0.2)
    manifest = compile_model(dense, target, tmp_path / "dense")
    assert [layer["kernel"] for layer in manifest["layers"]] == [chooser.DENSE_TERNARY]


def test_ternary_nibbles_decode_through_the_table():
    weight = np.random.default_rng(22).choice([-1.0, 0.0, 1.0], size=(10, 7)).astype(np.float32)
    codes = layout.ternary_nibbles(weight)
    assert codes.shape == (7, 3) and codes.dtype == np.uint8
    decoded = layout.NIBBLE_TABLE[codes.astype(int)].reshape(7, 12)[:, :10]
    np.testing.assert_array_equal(decoded.T, weight)
    assert not np.any(codes[:, 2] & 0b11001100)  # outputs 10 and 11 are padding: no bits


def test_neon_tiles_read_code_bytes():
    """NEON's dense-ternary reads one code byte per 4 outputs and the table: 2 bits per weight too."""
    batch, k, out = 2, 90, 45
    model = binary_dense_model(np.random.default_rng(23), batch, k, out, mode="real", sparsity=0.2)
    vm, lowering = compile_x86(model, kernels=CpuKernelSchedules(NEON_TILES))
    [layer] = lowering.layers
    assert layer.lowered_bytes == k * layout.ceil_div(out, 4) + layout.NIBBLE_TABLE.nbytes + 2 * 4 * out
    x = sample(model)
    assert relative_error(run(vm, x), reference(model, x)) < 1e-5


# (batch, channels, size, out, stride): pixels in whole AVX-512 vectors (8x8, 16x16) and not (7x7,
# 5x5, 14x14: the glue's tiles take vectors of output channels), out channels off plane words (45,
# 33), downsampling shortcuts (stride 2 on even and odd maps)
POINTWISE_CASES = [
    (1, 24, 8, 40, 1),
    (2, 37, 7, 45, 1),
    (1, 64, 16, 33, 1),
    (3, 16, 5, 64, 1),
    (1, 130, 14, 70, 1),
    (1, 32, 16, 48, 2),
    (2, 20, 9, 24, 2),
]


@pytest.mark.parametrize("batch, channels, size, out, stride", POINTWISE_CASES)
def test_pointwise_ternary_matches_reference(batch, channels, size, out, stride):
    """A 1x1 conv below the break-even keeps its 2-bit planes and decodes them per call for the
    fp32 glue's GEMM tiles (strided: on its subsampled input)."""
    rng = np.random.default_rng(19)
    model = binary_conv_model(rng, batch, channels, size, out, 1, stride, 0, mode="real", sparsity=0.3)
    vm, lowering = compile_x86(model, policy=POINTWISE_ALWAYS)
    x = sample(model)
    [layer] = lowering.layers
    assert layer.kernel == chooser.DENSE_TERNARY and "1x1" in layer.reason
    assert layer.lowered_bytes == 2 * channels * layout.ceil_div(out, layout.PLANE_BITS) * 4 + 2 * 4 * out
    assert relative_error(run(vm, x), reference(model, x)) < 1e-5


@pytest.mark.parametrize("tiles", [AVX2_TILES, NEON_TILES], ids=["avx2", "neon"])
@pytest.mark.parametrize("size", [7, 8], ids=["channel-vectors", "pixel-vectors"])
def test_pointwise_ternary_with_other_families_tiles(tiles, size):
    """AVX2's 16 registers, NEON's 4 lanes and its weights loaded as vectors (run on this host)."""
    model = binary_conv_model(np.random.default_rng(20), 2, 20, size, 36, 1, 1, 0, mode="real", sparsity=0.2)
    vm, lowering = compile_x86(model, kernels=CpuKernelSchedules(tiles), policy=POINTWISE_ALWAYS)
    x = sample(model)
    assert lowering.layers[0].kernel == chooser.DENSE_TERNARY
    assert relative_error(run(vm, x), reference(model, x)) < 1e-5


def test_pointwise_ternary_fuses_residual_add_and_relu6():
    """An inverted residual's tail: ``Clip(conv(x) + x, 0, 6)`` in the GEMM's epilogue."""
    g = GraphBuilder(np.random.default_rng(21))
    y = g.binary("BinaryConv", "x", ternary(g.rng, 24, 24, 0.2), "pw", "real", kernel_shape=[1, 1])
    s = g.node("Add", [y, "x"], "add")
    lo, hi = g.const("lo", np.array(0.0, np.float32)), g.const("hi", np.array(0.6, np.float32))
    model = g.model((1, 24, 8, 8), g.node("Clip", [s, lo, hi], "relu6"))
    vm, lowering = compile_x86(model, policy=POINTWISE_ALWAYS)
    [layer] = lowering.layers
    assert (layer.kernel, layer.epilogue) == (chooser.DENSE_TERNARY, "add+clip(0, 0.6)")
    x = sample(model)
    assert relative_error(run(vm, x), reference(model, x)) < 1e-5


@pytest.mark.parametrize("least, packed", [(None, False), (196, True), (197, False)])
def test_pointwise_ternary_from_the_policys_flat_outputs(least, packed):
    """The fp32 GEMM by default; the 2-bit planes from ``pointwise_ternary_min_outputs`` flat
    outputs (a 14x14 map: 196)."""
    model = binary_conv_model(np.random.default_rng(22), 1, 32, 14, 48, 1, 1, 0, mode="real", sparsity=0.3)
    vm, lowering = compile_x86(
        model, policy=dataclasses.replace(default_policy("x86"), pointwise_ternary_min_outputs=least)
    )
    [layer] = lowering.layers
    assert layer.kernel == (chooser.DENSE_TERNARY if packed else chooser.DENSE_FP32), layer.reason
    x = sample(model)
    assert relative_error(run(vm, x), reference(model, x)) < 1e-5
