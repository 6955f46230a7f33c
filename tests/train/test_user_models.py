"""A user's own ResNet-style module (tests.models.user_nets), trained with every method by import path.

Each run's masks are exact, its ticket rebuilds the trained model bit for bit, and (slow) it goes
through export, packing (when it has ternary layers) and an x86 compile whose module computes
what PyTorch computes.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

import mptc.jackpot  # noqa: F401  (registers the jackpot methods' hooks)
from mptc.config import TrainConfig
from mptc.conventions import kept_count
from mptc.data import load_dataset
from mptc.errors import InputError
from mptc.models.weights import read_state_dict, state_sha256
from mptc.nn.layers import masked_layers
from mptc.ticket import load_ticket
from mptc.train.loop import train
from tests.models.user_nets import TinyResNet

NET = "tests.models.user_nets:TinyResNet"
DATA = "synthetic:1x8x8"
SPARSITY = 0.6

VARIANTS = {
    "dense": dict(method="dense"),
    "edge-popup": dict(method="edge-popup"),
    "biprop": dict(method="biprop", per_channel_alpha=True, dense_last=True),
    "mpt-1/1": dict(method="biprop", binary_act=True, model_args={"act": "hardtanh"}),
    "biprop-over-pretrained": dict(method="biprop", pretrained=True),
    "jackpot": dict(method="jackpot", binarize=True, pretrained=True),
    "magnitude": dict(method="magnitude", pretrained=True),
}


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """A safetensors state dict of the user's model (its own seeded initial weights)."""
    torch.manual_seed(5)
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_file({key: value.contiguous() for key, value in TinyResNet().state_dict().items()}, path)
    return path


@pytest.fixture(scope="module", params=list(VARIANTS))
def user_run(request, tmp_path_factory, weights_file):
    options = dict(VARIANTS[request.param])
    if options.pop("pretrained", False):
        options["pretrained"] = str(weights_file)
    epochs = None if options["method"] == "magnitude" else 1
    config = TrainConfig(model=NET, dataset=DATA, sparsity=SPARSITY, epochs=epochs, seed=2, **options)
    return request.param, train(config, tmp_path_factory.mktemp("runs") / "run")


def test_masks_are_exact_and_the_ticket_rebuilds_the_model(user_run):
    name, result = user_run
    layers = masked_layers(result.model)
    if name == "dense":
        assert not layers
    elif result.config.method in ("jackpot", "magnitude"):  # one global threshold over all layers
        total = sum(layer.weight.numel() for _, layer in layers)
        assert sum(int(layer.mask().sum()) for _, layer in layers) == kept_count(total, SPARSITY)
    else:
        for layer_name, layer in layers:
            assert int(layer.mask().sum()) == kept_count(layer.weight.numel(), SPARSITY), layer_name
    model, config = load_ticket(result.run_dir / "ticket.safetensors")
    assert config == result.config
    x = load_dataset(DATA).test.x[:64]
    with torch.no_grad():
        assert torch.equal(model(x), result.model.eval()(x))


def test_a_ticket_over_pre_trained_weights_references_them_by_hash(user_run, weights_file):
    name, result = user_run
    stored = set(load_file(result.run_dir / "ticket.safetensors"))
    masked = [layer_name for layer_name, _ in masked_layers(result.model)]
    if result.config.pretrained is None:
        assert result.config.pretrained_sha256 is None
        assert not {f"{layer_name}.weight" for layer_name in masked} & stored  # drawn again from the seed
        return
    assert result.config.pretrained_sha256 == state_sha256(read_state_dict(weights_file))
    assert masked and not {f"{layer_name}.weight" for layer_name in masked} & stored  # not in the ticket
    assert {f"{layer_name}.mask_bits" for layer_name in masked} <= stored


@pytest.mark.slow
def test_exported_packed_and_compiled_module_computes_what_pytorch_does(user_run, tmp_path):
    from mptc.export import export_run
    from mptc.export.freeze import freeze
    from mptc.export.onnx_export import compare_logits
    from mptc.passes.inspect import inspect_model
    from mptc.passes.pipeline import optimize_file
    from mptc.pipeline import module_logits
    from mptc.targets.compile import compile_model

    name, result = user_run
    export_run(result.run_dir, tmp_path / "model.onnx")
    source = tmp_path / "model.onnx"
    ternary = name not in ("dense", "magnitude")  # magnitude pruning keeps real-valued weights
    if ternary:
        packed = optimize_file(source, tmp_path / "packed.onnx")
        assert len([row for row in inspect_model(packed) if row.op.startswith("Binary")]) == len(
            masked_layers(result.model)
        )
        source = tmp_path / "packed.onnx"
    manifest = compile_model(source, "x86", tmp_path / "x86")
    x = load_dataset(DATA).test.x[:64]
    logits = module_logits(tmp_path / "x86" / "module.so", x.numpy(), manifest["input"]["shape"][0])
    with torch.no_grad():
        reference = freeze(result.model)(x).numpy()
    compare_logits(
        reference[: len(logits)], logits, f"{name}: PyTorch and the compiled module", result.config.binary_act
    )


@pytest.fixture(scope="module")
def pretrained_run(tmp_path_factory, weights_file):
    """A biprop run over the user's pre-trained weights, and a private copy of those weights."""
    folder = tmp_path_factory.mktemp("pretrained-run")
    weights = folder / "weights.safetensors"
    weights.write_bytes(weights_file.read_bytes())
    config = TrainConfig(model=NET, dataset=DATA, method="biprop", pretrained=str(weights), epochs=1)
    return train(config, folder / "run"), weights


def test_a_ticket_refuses_other_pre_trained_weights_naming_both_hashes(pretrained_run, tmp_path):
    from mptc.cli import main

    result, weights = pretrained_run
    torch.manual_seed(9)
    save_file(
        {key: value.contiguous() for key, value in TinyResNet().state_dict().items()}, tmp_path / "other.safetensors"
    )
    with pytest.raises(InputError, match=f"sha256 {result.config.pretrained_sha256}.*holds weights of sha256"):
        load_ticket(result.run_dir / "ticket.safetensors", pretrained=tmp_path / "other.safetensors")
    saved = weights.read_bytes()
    weights.write_bytes((tmp_path / "other.safetensors").read_bytes())  # the recorded path now holds others
    try:
        cli = CliRunner().invoke(main, ["eval", str(result.run_dir)])
    finally:
        weights.write_bytes(saved)
    assert cli.exit_code == 3, cli.output
    other = json.loads(json.dumps(cli.output))
    assert result.config.pretrained_sha256 in other and "holds weights of sha256" in other
    assert len(other.strip().splitlines()) == 1


def test_a_resumed_run_over_changed_weights_is_refused(pretrained_run):
    result, weights = pretrained_run
    expected = result.config.pretrained_sha256
    saved = weights.read_bytes()
    torch.manual_seed(11)
    save_file({key: value.contiguous() for key, value in TinyResNet().state_dict().items()}, weights)
    try:
        as_given = dataclasses.replace(result.config, pretrained_sha256=None)  # as the CLI gives it
        with pytest.raises(InputError, match=f"started on pre-trained weights of sha256 {expected}.*now holds"):
            train(as_given, result.run_dir, resume=True)
        with pytest.raises(InputError, match=f"holds weights of sha256 .*needs the weights of sha256 {expected}"):
            train(result.config, result.run_dir, resume=True)
    finally:
        weights.write_bytes(saved)


def test_a_model_whose_logits_do_not_fit_the_data_is_refused_before_training(tmp_path):
    config = TrainConfig(model=NET, model_args={"num_classes": 3}, dataset=DATA, epochs=1)
    with pytest.raises(InputError, match=r"to \(2, 3\); the data set needs \(batch, 10\)"):
        train(config, tmp_path / "run")


def test_a_model_that_does_not_take_the_data_s_inputs_is_refused_with_the_shape(tmp_path):
    config = TrainConfig(model=NET, model_args={"in_channels": 3}, dataset=DATA, epochs=1)
    with pytest.raises(InputError, match=r"does not take inputs of shape \(1, 8, 8\): .*channels"):
        train(config, tmp_path / "run")


def test_input_shape_shapes_synthetic_data_and_must_match_other_data(tmp_path):
    config = TrainConfig(model=NET, model_args={"in_channels": 3}, dataset="synthetic", input_shape=(3, 8, 8), epochs=1)
    assert train(config, tmp_path / "a").config.dataset == "synthetic:3x8x8"
    with pytest.raises(InputError, match="not the --input-shape 3x8x8"):
        train(TrainConfig(model=NET, dataset="digits", input_shape=(3, 8, 8), epochs=1), tmp_path / "b")


def test_dropout_in_a_user_model_resumes_bit_identically(tmp_path):
    config = TrainConfig(model="tests.models.user_nets:DropoutNet", method="dense", dataset=DATA, epochs=2, seed=4)
    state = torch.get_rng_state()
    whole = train(config, tmp_path / "whole")
    assert torch.equal(torch.get_rng_state(), state)  # the caller's RNG is left alone

    class Interrupted(Exception):
        pass

    def stop_after_first_epoch(record: dict) -> None:
        raise Interrupted

    with pytest.raises(Interrupted):
        train(config, tmp_path / "split", on_epoch=stop_after_first_epoch)
    resumed = train(config, tmp_path / "split", resume=True)
    for key, value in whole.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert not np.isclose(whole.metrics["history"][0]["train_loss"], whole.metrics["history"][1]["train_loss"])
