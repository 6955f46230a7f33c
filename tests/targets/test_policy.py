"""Kernel policy: one measured default per target family, varied by value."""

import dataclasses

import pytest

from mptc.targets.policy import KernelPolicy, default_policy
from mptc.targets.target import TARGETS


@pytest.mark.parametrize("family", TARGETS)
def test_every_family_has_a_default_policy(family):
    assert isinstance(default_policy(family), KernelPolicy)


def test_the_manifest_break_evens_name_each_op():
    policy = dataclasses.replace(default_policy("x86"), conv_break_even=0.4)
    assert policy.sparse_break_even == {
        "BinaryConv": 0.4,
        "BinaryDense": default_policy("x86").dense_ternary_tier(None),
    }
