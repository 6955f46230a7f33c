import math

import pytest
import torch

from mptc.jackpot.restriction import restrict_mask_change, restriction_rate
from mptc.nn.layers import MaskedLinear, MaskSpec


def _layer_after_a_big_step(seed=0):
    gen = torch.Generator().manual_seed(seed)
    layer = MaskedLinear(32, 16, spec=MaskSpec(0.75, signed_scores=True))
    layer.scores.data = torch.rand(16, 32, generator=gen)
    before = layer.mask().bool()
    layer.scores.data += torch.randn(16, 32, generator=gen) * 0.5  # many weights want to swap
    candidates = int((layer.mask().bool() & ~before).sum())
    return layer, before, candidates


@pytest.mark.parametrize("rate", [0.01, 0.25, 0.6])
def test_restriction_bounds_the_swaps(rate):
    layer, before, candidates = _layer_after_a_big_step()
    wanted = layer.mask().bool()
    assert candidates > 20
    after = restrict_mask_change(layer, before, rate)
    allowed = math.ceil(rate * candidates)
    assert torch.equal(layer.mask().bool(), after)  # the scores encode the restricted mask
    assert int(after.sum()) == layer.kept
    assert int((after & ~before).sum()) == allowed and int((before & ~after).sum()) == allowed
    # the applied revivals are the highest-scored candidates
    revived = layer.scores[after & ~before]
    held = layer.scores[wanted & ~before & ~after]
    assert revived.min() > held.max()


def test_held_back_candidates_stay_next_in_line():
    layer, before, _ = _layer_after_a_big_step()
    after = restrict_mask_change(layer, before, 0.1)
    kept_min, pruned_max = layer.scores[after].min(), layer.scores[~after].max()
    assert pruned_max < kept_min and torch.nextafter(pruned_max, torch.tensor(math.inf)) == kept_min


def test_no_restriction_lets_the_mask_follow_the_scores():
    layer, before, candidates = _layer_after_a_big_step()
    wanted = layer.mask().bool()
    after = restrict_mask_change(layer, before, None)
    assert torch.equal(after, wanted) and int((after != before).sum()) == 2 * candidates


def test_cosine_schedule():
    assert restriction_rate(0.0, 0.8) == pytest.approx(0.8)
    assert restriction_rate(0.5, 0.8) == pytest.approx(0.4)
    assert restriction_rate(1.0, 0.8) == pytest.approx(0.0)
    rates = [restriction_rate(p / 10, 1.0) for p in range(11)]
    assert rates == sorted(rates, reverse=True)


def test_restriction_needs_signed_scores():
    layer = MaskedLinear(4, 4, spec=MaskSpec(0.5))
    with pytest.raises(ValueError, match="signed-score"):
        restrict_mask_change(layer, layer.mask(), 0.5)
