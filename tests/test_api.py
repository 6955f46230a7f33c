"""The Python API (mptc/api.py), re-exported lazily from mptc."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import mptc
from mptc.conventions import kept_count
from mptc.errors import InputError
from mptc.jackpot.magnitude import global_kept_counts, magnitude_mask
from mptc.nn.layers import masked_layers
from tests.models.user_nets import TinyResNet


def test_import_mptc_loads_no_framework_until_a_name_is_used():
    code = (
        "import sys, mptc\n"
        "assert not {'torch', 'tvm'} & set(sys.modules), sorted({'torch', 'tvm'} & set(sys.modules))\n"
        "assert mptc.TrainConfig().method == 'biprop' and 'torch' not in sys.modules\n"
        "assert callable(mptc.prune) and callable(mptc.compile) and 'torch' not in sys.modules\n"
        "print(sorted(mptc.__all__))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_every_name_in_all_resolves():
    for name in mptc.__all__:
        assert getattr(mptc, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        mptc.nothing  # noqa: B018


def test_train_and_export_stay_callable_although_they_are_also_packages():
    import mptc.export.onnx_export  # noqa: F401  (binds mptc.export to the package)
    import mptc.train.loop  # noqa: F401

    assert callable(mptc.train) and callable(mptc.export)
    with pytest.raises(InputError, match="unknown training option"):
        mptc.train("mlp", out="unused", colour="blue")


def test_prune_draws_random_weights_from_the_seed_by_default():
    model, original = TinyResNet(), TinyResNet()
    original.load_state_dict(model.state_dict())
    conversion = mptc.prune(model, "biprop", 0.8, seed=3)
    assert len(conversion.masked) == 7
    again = TinyResNet()
    mptc.prune(again, "biprop", 0.8, seed=3)
    for (name, layer), (_, twin) in zip(masked_layers(model), masked_layers(again), strict=True):
        assert int(layer.mask().sum()) == kept_count(layer.weight.numel(), 0.8), name
        assert torch.equal(layer.weight, twin.weight) and torch.equal(layer.mask(), twin.mask())
    assert not torch.equal(model.layer1.conv1.weight, original.layer1.conv1.weight)


def test_prune_keeps_pre_trained_weights_when_asked():
    model = TinyResNet()
    weight = model.layer1.conv1.weight.detach().clone()
    mptc.prune(model, "edge-popup", 0.5, keep_weights=True, binary_act=["layer2.*"])
    assert torch.equal(model.layer1.conv1.weight, weight)
    assert model.layer2.conv1.input_sign is not None and model.layer1.conv1.input_sign is None
    assert [n for n, p in model.named_parameters() if p.requires_grad] == [
        f"{n}.scores" for n, _ in masked_layers(model)
    ]


def test_prune_for_a_jackpot_starts_from_the_global_magnitude_mask():
    model = TinyResNet()
    weights = [
        module.weight.detach().clone()
        for module in model.modules()
        if isinstance(module, torch.nn.Conv2d | torch.nn.Linear)
    ]
    mptc.prune(model, "jackpot", 0.9)
    counts = global_kept_counts(weights, 0.9)
    for (name, layer), weight, kept in zip(masked_layers(model), weights, counts, strict=True):
        assert torch.equal(layer.weight, weight) and torch.equal(layer.mask(), magnitude_mask(weight, kept)), name
    with pytest.raises(InputError, match="cannot be False"):
        mptc.prune(TinyResNet(), "jackpot", 0.9, keep_weights=False)


def test_prune_refuses_unknown_methods_with_an_input_error():
    with pytest.raises(InputError, match="unknown method"):
        mptc.prune(TinyResNet(), "lottery")


def test_train_records_a_model_class_by_its_import_path(tmp_path):
    result = mptc.train(
        TinyResNet,
        out=tmp_path / "run",
        method="biprop",
        dataset="synthetic:1x8x8",
        epochs=1,
        binary_act=["layer*.conv2"],
        model_args={"act": "hardtanh", "width": 4},
    )
    config = result.config
    assert (config.model, config.binary_act, config.binary_act_before) == (
        "tests.models.user_nets:TinyResNet",
        True,
        ("layer*.conv2",),
    )
    model, loaded = mptc.load_ticket(tmp_path / "run")
    assert loaded == config and model.layer2.conv2.input_sign is not None


def test_train_takes_a_complete_config_but_not_with_further_options(tmp_path):
    with pytest.raises(InputError, match="no further options"):
        mptc.train(mptc.TrainConfig(), out=tmp_path / "run", epochs=2)
    with pytest.raises(InputError, match="sparsity"):
        mptc.train("mlp", out=tmp_path / "run", sparsity=1.5)


@pytest.mark.slow
def test_export_optimize_compile_profile_on_a_run(tiny_run, tmp_path):
    exported = mptc.export(tiny_run.run_dir, tmp_path / "model.onnx")
    assert exported.argmax_agreement == 1.0
    packed = mptc.optimize(exported.path)
    assert packed.path == tmp_path / "packed.onnx" and len(packed.packed_layers) == 3
    manifest = mptc.compile(exported.path, target="x86", out=tmp_path / "x86")  # packs it itself first
    assert manifest.target.family == "x86" and (tmp_path / "x86" / "packed.onnx").is_file()
    report = mptc.profile(tmp_path / "x86", repeat=2, per_layer=True, rounds=1)
    assert report["outputs_match"] and (tmp_path / "x86" / "profile.json").is_file()
    assert report["per_layer"]["rows"]
