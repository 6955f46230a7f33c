import pytest
import torch

from mptc.errors import UnsupportedError
from mptc.models import MODELS, LayerRecipe, build_model
from mptc.nn.init import initialize
from mptc.nn.layers import BinaryActivation, masked_layers

SHAPES = {
    "mlp": (1, 8, 8),
    "conv2": (1, 8, 8),
    "conv4": (1, 8, 8),
    "conv6": (3, 16, 16),
    "conv8": (3, 16, 16),
    "vgg-small": (3, 16, 16),
    "resnet18": (3, 16, 16),
}


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("binary_act", [False, True])
def test_every_model_runs_forward_and_backward(name, binary_act):
    recipe = LayerRecipe(method="biprop", sparsity=0.7, binary_act=binary_act, width=0.125)
    model = build_model(name, recipe, SHAPES[name], 10)
    initialize(model, 0, "kaiming-normal")
    out = model(torch.randn(2, *SHAPES[name]))
    assert out.shape == (2, 10)
    out.sum().backward()
    assert all(layer.scores.grad is not None for _, layer in masked_layers(model))
    assert any(isinstance(m, BinaryActivation) for m in model.modules()) == binary_act


def test_dense_first_and_last_keep_ordinary_layers():
    model = build_model("mlp", LayerRecipe(dense_first=True, dense_last=True), (1, 8, 8), 10)
    names = [name for name, _ in masked_layers(model)]
    assert names == ["body.4"]


def test_width_multiplier_scales_channels():
    model = build_model("conv2", LayerRecipe(width=0.5), (1, 8, 8), 10)
    assert masked_layers(model)[0][1].weight.shape[0] == 32


def test_too_small_input_is_a_clear_error():
    with pytest.raises(UnsupportedError, match="at least 16x16"):
        build_model("conv8", LayerRecipe(), (1, 8, 8), 10)


def test_unknown_model_is_a_clear_error():
    with pytest.raises(UnsupportedError, match="unknown model"):
        build_model("alexnet", LayerRecipe(), (1, 8, 8), 10)
