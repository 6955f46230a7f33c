"""convert(): a user's nn.Module masked in place, one test per documented case."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mptc.conventions import kept_count
from mptc.errors import InputError, UnsupportedError
from mptc.export.freeze import freeze
from mptc.models.convert import convert
from mptc.models.factory import LayerRecipe
from mptc.nn.init import initialize, initialize_scores
from mptc.nn.layers import MaskedConv2d, MaskedLayer, MaskedLinear, masked_layers
from tests.models.user_nets import MixedConvNet, TinyResNet

RESNET_LAYERS = (
    "stem.0",
    "layer1.conv1",
    "layer1.conv2",
    "layer2.conv1",
    "layer2.conv2",
    "layer2.shortcut.0",
    "fc",
)


def trainable(model: nn.Module) -> list[str]:
    return [name for name, p in model.named_parameters() if p.requires_grad]


def test_every_conv_and_linear_is_masked_with_exact_counts_and_same_keys():
    model = TinyResNet()
    keys = set(model.state_dict())
    conversion = convert(model, LayerRecipe(method="biprop", sparsity=0.7))
    assert conversion.masked == RESNET_LAYERS and conversion.dense == () and conversion.left == ()
    initialize(model, 0, "kaiming-normal")
    for name, layer in masked_layers(model):
        assert int(layer.mask().sum()) == kept_count(layer.weight.numel(), 0.7), name
    assert set(model.state_dict()) == keys | {f"{name}.scores" for name in RESNET_LAYERS}
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_only_scores_train_and_normalisation_only_with_learn_bn():
    model = TinyResNet()
    convert(model, LayerRecipe(method="biprop", sparsity=0.5))
    assert trainable(model) == [f"{name}.scores" for name in RESNET_LAYERS]
    model = TinyResNet()
    convert(model, LayerRecipe(method="biprop", sparsity=0.5, learn_bn=True))
    assert "layer1.bn1.weight" in trainable(model) and "fc.bias" not in trainable(model)


def test_dense_first_and_last_stay_ordinary_trainable_layers():
    model = TinyResNet()
    conversion = convert(model, LayerRecipe(method="edge-popup", dense_first=True, dense_last=True))
    assert conversion.dense == ("stem.0", "fc") and conversion.masked == RESNET_LAYERS[1:-1]
    assert type(model.stem[0]) is nn.Conv2d and type(model.fc) is nn.Linear
    assert {"stem.0.weight", "fc.weight", "fc.bias"} <= set(trainable(model))


def test_dense_method_converts_nothing_and_trains_everything():
    model = TinyResNet()
    conversion = convert(model, LayerRecipe(method="dense", sparsity=0.0))
    assert conversion.masked == () and conversion.dense == RESNET_LAYERS
    assert all(p.requires_grad for p in model.parameters())


def test_a_lone_layer_is_first_and_last():
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    assert convert(model, LayerRecipe(dense_last=True)).dense == ("1",)


def test_groups_dilation_bias_and_padding_mode_carry_over_exactly():
    torch.manual_seed(0)
    model = MixedConvNet().eval()
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        before = model(x)
    convert(model, LayerRecipe(method="edge-popup", sparsity=0.0))  # keeps every weight: the same function
    initialize_scores(model, 0)
    grouped, depthwise = model.grouped, model.depthwise
    assert isinstance(grouped, MaskedConv2d) and (grouped.groups, grouped.dilation) == (2, (2, 2))
    assert isinstance(depthwise, MaskedConv2d) and depthwise.groups == 8 and depthwise.padding_mode == "reflect"
    assert depthwise.bias is not None and not depthwise.bias.requires_grad
    with torch.no_grad():
        torch.testing.assert_close(model(x), before)


@pytest.mark.parametrize("binary_act", [False, True])
def test_frozen_export_module_matches_a_converted_model_with_biases_and_groups(binary_act):
    model = MixedConvNet()
    convert(model, LayerRecipe(method="biprop", sparsity=0.6, per_channel_alpha=True, binary_act=binary_act))
    initialize(model, 3, "kaiming-normal")
    model.eval()
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(freeze(model)(x), model(x), rtol=1e-5, atol=1e-5)


def test_binary_activations_default_to_every_masked_layer_but_the_first():
    model = TinyResNet()
    conversion = convert(model, LayerRecipe(binary_act=True, dense_last=True))
    assert conversion.binary_inputs == RESNET_LAYERS[1:-1]
    assert model.stem[0].input_sign is None and model.layer1.conv1.input_sign is not None


def test_binary_activation_patterns_and_predicates_choose_layers():
    model = TinyResNet()
    assert convert(model, LayerRecipe(binary_act=True), ["layer*.conv2"]).binary_inputs == (
        "layer1.conv2",
        "layer2.conv2",
    )
    model = TinyResNet()
    chosen = convert(model, LayerRecipe(binary_act=True), lambda name, layer: isinstance(layer, nn.Linear))
    assert chosen.binary_inputs == ("fc",)


def test_binary_input_is_sign_in_front_of_the_layer():
    model = nn.Sequential(nn.Linear(4, 4, bias=False), nn.Linear(4, 3, bias=False))
    convert(model, LayerRecipe(method="edge-popup", sparsity=0.0, binary_act=True))
    initialize_scores(model, 0)
    x = torch.tensor([[-0.5, 0.0, 2.0, -3.0]])
    hidden = model[0](x)
    expected = torch.where(hidden >= 0, 1.0, -1.0) @ model[1].weight.T  # sign(0) = +1
    torch.testing.assert_close(model(x), expected)


@pytest.mark.parametrize(
    ("where", "error", "match"),
    [
        (["nothing*"], InputError, "matches no Conv2d/Linear"),
        (["stem.0"], UnsupportedError, "first layer"),
        (["fc"], UnsupportedError, "stays dense"),
    ],
)
def test_binary_activation_positions_that_cannot_hold_one_are_refused(where, error, match):
    with pytest.raises(error, match=match):
        convert(TinyResNet(), LayerRecipe(binary_act=True, dense_last=True), where)


def test_positions_without_binary_activations_are_refused():
    with pytest.raises(InputError, match="without binary activations"):
        convert(TinyResNet(), LayerRecipe(), ["layer1.conv1"])


def test_dense_method_has_no_masked_layer_to_put_signs_in_front_of():
    with pytest.raises(UnsupportedError, match="method dense has none"):
        convert(TinyResNet(), LayerRecipe(method="dense", sparsity=0.0, binary_act=True))


class ScaledLinear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * super().forward(x)


def test_subclasses_other_convolutions_and_attention_projections_are_left_with_a_reason():
    model = nn.ModuleDict(
        {
            "scaled": ScaledLinear(4, 4),
            "conv1d": nn.Conv1d(2, 2, 3),
            "attention": nn.MultiheadAttention(4, 2),
            "head": nn.Linear(4, 2),
        }
    )
    conversion = convert(model, LayerRecipe())
    left = dict(conversion.left)
    assert conversion.masked == ("head",)
    assert "subclass of Linear" in left["scaled"] and "not a Conv2d" in left["conv1d"]
    assert "MultiheadAttention" in left["attention.out_proj"]


def test_a_shared_layer_is_refused():
    shared = nn.Linear(4, 4)
    with pytest.raises(UnsupportedError, match="shared"):
        convert(nn.Sequential(shared, nn.ReLU(), shared), LayerRecipe())


@pytest.mark.parametrize(
    ("model", "match"),
    [
        (nn.Linear(3, 3), "single Linear"),
        (nn.Sequential(nn.ReLU()), "no Conv2d or Linear"),
    ],
)
def test_models_without_layers_to_wrap_are_refused(model, match):
    with pytest.raises(UnsupportedError, match=match):
        convert(model, LayerRecipe())


def test_converting_twice_and_width_multipliers_are_refused():
    model = TinyResNet()
    convert(model, LayerRecipe())
    with pytest.raises(UnsupportedError, match="already a masked layer"):
        convert(model, LayerRecipe())
    with pytest.raises(UnsupportedError, match="width multiplier"):
        convert(TinyResNet(), LayerRecipe(width=2.0))


def test_conversion_keeps_device_dtype_mode_and_the_global_rng():
    model = TinyResNet().double().eval()
    state = torch.get_rng_state()
    convert(model, LayerRecipe())
    assert torch.equal(torch.get_rng_state(), state)
    layer = model.layer2.conv1
    assert isinstance(layer, MaskedLayer) and layer.weight.dtype == torch.float64 and not layer.training
    assert isinstance(model.fc, MaskedLinear) and model.fc.bias is not None
