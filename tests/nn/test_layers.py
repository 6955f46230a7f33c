import pytest
import torch
import torch.nn.functional as F

from mptc.nn.layers import MaskedConv2d, MaskedLinear, MaskSpec


def test_sparsity_out_of_range_is_rejected():
    with pytest.raises(ValueError, match="fraction pruned"):
        MaskSpec(sparsity=1.5)


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 0.99])
def test_masked_conv_keeps_exact_count_and_matches_explicit_conv(sparsity):
    torch.manual_seed(0)
    layer = MaskedConv2d(3, 5, 3, stride=2, padding=1, spec=MaskSpec(sparsity, ternary=True))
    layer.scores.data.normal_()
    mask = layer.mask()
    assert int(mask.sum()) == round((1 - sparsity) * layer.weight.numel())
    x = torch.randn(2, 3, 9, 9)
    alpha = layer.weight.abs()[mask.bool()].mean()
    explicit = alpha * torch.where(layer.weight >= 0, 1.0, -1.0) * mask
    torch.testing.assert_close(layer(x), F.conv2d(x, explicit, stride=2, padding=1))


def test_only_scores_are_trainable():
    layer = MaskedLinear(6, 4, spec=MaskSpec(0.5))
    assert [name for name, p in layer.named_parameters() if p.requires_grad] == ["scores"]


def test_masked_linear_is_differentiable_in_its_input():
    layer = MaskedLinear(5, 3, spec=MaskSpec(0.4, ternary=True)).double()
    layer.scores.data.normal_()
    x = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,))


def test_set_mask_reproduces_the_mask_and_rejects_wrong_counts():
    layer = MaskedLinear(8, 4, spec=MaskSpec(0.75))
    mask = torch.zeros(4, 8)
    mask.view(-1)[torch.randperm(32)[:8]] = 1
    layer.set_mask(mask)
    assert torch.equal(layer.mask(), mask)
    with pytest.raises(ValueError, match="does not fit"):
        layer.set_mask(torch.ones(4, 8))


def test_signed_scores_rank_by_value_not_magnitude():
    layer = MaskedLinear(2, 2, spec=MaskSpec(0.5, signed_scores=True))
    layer.scores.data = torch.tensor([[-5.0, 1.0], [2.0, -3.0]])
    assert layer.mask().tolist() == [[0.0, 1.0], [1.0, 0.0]]
