import pytest
import torch

from mptc.nn.estimators import BipropTernaryWeight, BiRealSign, EdgePopupMask, binary_sign, ternary_alpha, top_k_mask


@pytest.mark.parametrize("numel,kept", [(10, 1), (100, 37), (1000, 500), (7, 7)])
def test_top_k_mask_keeps_exactly_k_largest(numel, kept):
    values = torch.randn(numel, generator=torch.Generator().manual_seed(numel))
    mask = top_k_mask(values.abs(), kept)
    assert int(mask.sum()) == kept
    assert values.abs()[mask.bool()].min() >= values.abs()[~mask.bool()].max() if kept < numel else True


def test_top_k_mask_is_exact_with_ties_straddling_the_threshold():
    values = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.5, 0.2])
    mask = top_k_mask(values, 2)
    assert int(mask.sum()) == 2 and mask[4:].sum() == 0


@pytest.mark.parametrize("numel,kept", [(300_000, 150_000), (70_000, 9), (5000, 4999)])
def test_radix_select_agrees_with_sort_on_signed_values(numel, kept):
    values = torch.randn(numel, generator=torch.Generator().manual_seed(kept))
    expected = torch.zeros(numel, dtype=torch.bool)
    expected[values.argsort(descending=True)[:kept]] = True
    assert torch.equal(top_k_mask(values, kept).bool(), expected)


def test_jackpot_style_tied_scores_give_the_magnitude_mask():
    scores = torch.tensor([1.0, 0.99, 1.0, 0.99, 0.99, 1.0])
    assert top_k_mask(scores, 3).tolist() == [1, 0, 1, 0, 0, 1]


def test_sign_of_zero_is_plus_one():
    assert binary_sign(torch.tensor([-2.0, 0.0, 3.0])).tolist() == [-1.0, 1.0, 1.0]


def test_edge_popup_gradient_matches_spec():
    gen = torch.Generator().manual_seed(0)
    weight, scores = torch.randn(4, 6, generator=gen), torch.randn(4, 6, generator=gen).requires_grad_()
    upstream = torch.randn(4, 6, generator=gen)
    effective = weight * EdgePopupMask.apply(scores.abs(), 12)
    (effective * upstream).sum().backward()
    # dL/ds = dL/dW_eff * W * sign(s)
    torch.testing.assert_close(scores.grad, upstream * weight * torch.sign(scores))


def test_biprop_forward_is_ternary_with_alpha_mean_of_kept_magnitudes():
    gen = torch.Generator().manual_seed(1)
    weight, scores = torch.randn(8, 5, generator=gen), torch.randn(8, 5, generator=gen)
    levels, alpha_out = BipropTernaryWeight.apply(scores.abs(), weight, binary_sign(weight), weight.abs(), 10, False)
    effective = levels * alpha_out
    assert set(levels.unique().tolist()) <= {-1.0, 0.0, 1.0}
    mask = top_k_mask(scores.abs(), 10).bool()
    alpha = weight.abs()[mask].mean()
    assert int((effective != 0).sum()) == 10
    torch.testing.assert_close(effective[mask].abs(), alpha.expand(10))
    torch.testing.assert_close(torch.sign(effective[mask]), torch.sign(weight[mask]))


def test_biprop_gradient_matches_spec():
    gen = torch.Generator().manual_seed(2)
    weight, scores = torch.randn(3, 7, generator=gen), torch.randn(3, 7, generator=gen).requires_grad_()
    upstream = torch.randn(3, 7, generator=gen)
    levels, alpha = BipropTernaryWeight.apply(scores.abs(), weight, binary_sign(weight), weight.abs(), 9, False)
    (levels * alpha * upstream).sum().backward()
    # alpha is constant; the STE multiplies by |W| and sign(W): dL/ds = dL/dW_eff * W * sign(s)
    torch.testing.assert_close(scores.grad, upstream * weight * torch.sign(scores))


def test_channel_keeping_nothing_still_gets_score_gradient():
    weight = torch.tensor([[1.0, -2.0], [3.0, 4.0]])
    scores = torch.tensor([[0.1, 0.2], [0.9, 0.8]], requires_grad=True)
    levels, alpha = BipropTernaryWeight.apply(scores.abs(), weight, binary_sign(weight), weight.abs(), 2, True)
    assert levels[0].abs().sum() == 0 and alpha.reshape(-1)[0] == 1.0
    (levels * alpha).sum().backward()
    assert (scores.grad[0] != 0).all()


def test_per_channel_alpha_is_mean_per_output_row():
    weight = torch.tensor([[1.0, -3.0, 0.5], [2.0, 2.0, -4.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    torch.testing.assert_close(ternary_alpha(weight.abs(), mask, True).reshape(-1), torch.tensor([2.0, 3.0]))
    torch.testing.assert_close(ternary_alpha(weight.abs(), mask, False), torch.tensor(2.5))


def test_bireal_sign_gradient_is_derivative_of_piecewise_quadratic():
    x = torch.linspace(-1.5, 1.5, 61, dtype=torch.float64).requires_grad_()
    BiRealSign.apply(x).sum().backward()
    expected = torch.where(x.abs() <= 1, 2 - 2 * x.abs(), torch.zeros_like(x))
    torch.testing.assert_close(x.grad, expected.detach())

    def approx(v):  # the Bi-Real approximation of sign whose derivative the STE uses
        return torch.where(
            v < -1,
            -torch.ones_like(v),
            torch.where(v < 0, 2 * v + v * v, torch.where(v < 1, 2 * v - v * v, torch.ones_like(v))),
        )

    eps = 1e-6
    points = torch.tensor([-0.7, -0.2, 0.3, 0.9, 1.3, -1.4], dtype=torch.float64)
    finite = (approx(points + eps) - approx(points - eps)) / (2 * eps)
    xs = points.clone().requires_grad_()
    BiRealSign.apply(xs).sum().backward()
    torch.testing.assert_close(xs.grad, finite, atol=1e-6, rtol=1e-6)
