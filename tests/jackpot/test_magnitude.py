import pytest
import torch

from mptc.conventions import kept_count
from mptc.jackpot.magnitude import global_kept_counts, magnitude_mask, magnitude_scores, mask_overlap
from mptc.nn.layers import MaskedLinear, MaskSpec


def test_global_threshold_splits_the_target_over_layers():
    gen = torch.Generator().manual_seed(0)
    weights = [
        torch.randn(64, 32, generator=gen) * 1.5,
        torch.randn(128, 64, generator=gen),
        torch.randn(10, 128, generator=gen) * 0.8,
    ]
    counts = global_kept_counts(weights, 0.9)
    sizes = [w.numel() for w in weights]
    assert sum(counts) == kept_count(sum(sizes), 0.9)
    weighted = sum((1 - k / n) * n for k, n in zip(counts, sizes)) / sum(sizes)
    assert weighted == pytest.approx(0.9, abs=1 / sum(sizes))
    sparsities = [1 - k / n for k, n in zip(counts, sizes)]
    assert sparsities[0] < sparsities[1] < sparsities[2]  # larger weights: more of them kept
    threshold = torch.cat([w.abs().flatten() for w in weights]).topk(sum(counts)).values[-1]
    assert counts == [int((w.abs() >= threshold).sum()) for w in weights]


def test_every_layer_keeps_at_least_one_weight():
    assert global_kept_counts([torch.ones(10) * 100, torch.full((10,), 1e-6)], 0.5) == [10, 1]


def test_magnitude_scores_rank_back_to_the_magnitude_mask():
    layer = MaskedLinear(16, 8, spec=MaskSpec(0.5, signed_scores=True))
    layer.set_kept(13)
    mask = magnitude_mask(layer.weight, 13)
    layer.scores.data.copy_(magnitude_scores(mask))
    assert torch.equal(layer.mask(), mask) and int(mask.sum()) == 13
    assert layer.scores.unique().tolist() == pytest.approx([0.99, 1.0])
    kept_magnitudes = layer.weight.abs()[mask.bool()]
    assert kept_magnitudes.min() >= layer.weight.abs()[~mask.bool()].max()


def test_set_kept_rejects_impossible_counts():
    layer = MaskedLinear(4, 2, spec=MaskSpec(0.5))
    with pytest.raises(ValueError, match="can keep 1 to 8"):
        layer.set_kept(9)


def test_mask_overlap():
    a, b = torch.tensor([1.0, 1, 0, 0]), torch.tensor([0.0, 1, 1, 0])
    assert mask_overlap([a], [a]) == 1.0
    assert mask_overlap([a], [b]) == 0.5
    assert mask_overlap([a], [1 - a]) == 0.0
