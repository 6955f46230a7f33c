import math

import torch

from mptc.models import LayerRecipe, build_model
from mptc.nn.init import derive_seed, initialize, random_weight


def _weights(seed, init="kaiming-normal"):
    model = build_model("mlp", LayerRecipe(method="biprop"), (1, 8, 8), 10)
    initialize(model, seed, init)
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_same_seed_gives_identical_weights_and_scores():
    a, b = _weights(3), _weights(3)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_different_seeds_differ():
    a, b = _weights(3), _weights(4)
    assert not torch.equal(a["body.1.weight"], b["body.1.weight"])


def test_derive_seed_is_stable():
    assert derive_seed(0, "body.1", "weight") == derive_seed(0, "body.1", "weight")
    assert derive_seed(0, "body.1", "weight") != derive_seed(0, "body.1", "scores")


def test_signed_constant_is_plus_minus_sigma():
    w = random_weight(torch.Size([64, 32]), "signed-constant", 0.5, torch.Generator().manual_seed(0))
    sigma = math.sqrt(2 / 32)
    assert torch.allclose(w.abs(), torch.full_like(w, sigma))


def test_scaled_kaiming_divides_variance_by_kept_fraction():
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    base = random_weight(torch.Size([256, 256]), "kaiming-normal", 0.75, gen())
    scaled = random_weight(torch.Size([256, 256]), "scaled-kaiming", 0.75, gen())
    torch.testing.assert_close(scaled, base / math.sqrt(0.25))
    assert abs(float(base.std()) - math.sqrt(2 / 256)) < 0.01
