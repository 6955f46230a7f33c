"""Every CPU family's kernel tiles (AVX-512, AVX2, NEON) give the reference result; the schedule
is target-independent TIR, so each runs on this x86 host."""

import numpy as np
import pytest

from mptc.targets.schedules.arm import NEON_TILES
from mptc.targets.schedules.cpu import CpuKernelSchedules
from mptc.targets.schedules.x86 import AVX2_TILES, AVX512_TILES

from ..harness import compile_x86, reference, run, sample
from ..packed_models import binary_chain, binary_conv_model

FAMILIES = {"avx512": AVX512_TILES, "avx2": AVX2_TILES, "neon": NEON_TILES}


@pytest.mark.parametrize("family", FAMILIES)
def test_tiles_of_every_family_match_reference(family):
    kernels = CpuKernelSchedules(FAMILIES[family])
    for model in (binary_chain(np.random.default_rng(7)), binary_conv_model(np.random.default_rng(8), 2, 70, 9, 13, 3, 2, 1, mode="real")):
        vm, _ = compile_x86(model, break_even=0.0, kernels=kernels)
        x = sample(model)
        np.testing.assert_allclose(run(vm, x), reference(model, x), rtol=1e-5, atol=1e-5)
