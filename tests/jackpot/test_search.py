import dataclasses
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from mptc.config import TrainConfig
from mptc.data import load_dataset
from mptc.errors import InputError
from mptc.jackpot.magnitude import magnitude_mask
from mptc.jackpot.search import JackpotSearch
from mptc.nn.layers import masked_layers
from mptc.ticket import load_ticket
from mptc.train.hooks import SearchHooks, hooks_for
from mptc.train.loop import build, train


@pytest.fixture(scope="session")
def jackpot_config(tiny_dense_run):
    return TrainConfig(
        model="mlp",
        method="jackpot",
        width=0.25,
        sparsity=0.9,
        epochs=2,
        seed=3,
        pretrained=str(tiny_dense_run.run_dir),
    )


@pytest.fixture(scope="session")
def jackpot_run(tmp_path_factory, jackpot_config):
    return train(jackpot_config, tmp_path_factory.mktemp("runs") / "jackpot")


def test_jackpot_methods_register_their_hooks(jackpot_config):
    magnitude = dataclasses.replace(jackpot_config, method="magnitude", epochs=None)
    assert type(hooks_for(jackpot_config)) is JackpotSearch and type(hooks_for(magnitude)) is JackpotSearch
    assert type(hooks_for(dataclasses.replace(jackpot_config, method="biprop", pretrained=None))) is SearchHooks


def test_the_training_loop_does_not_import_the_jackpot():
    """train/ knows methods only through the hooks they register: no import cycle with mptc.jackpot."""
    code = "import sys, mptc.train.loop; assert not [m for m in sys.modules if m.startswith('mptc.jackpot')]"
    subprocess.run([sys.executable, "-c", code], check=True)


def _prepared(config):
    dataset = load_dataset("digits")
    model = build(config, dataset)
    JackpotSearch(config).prepare(model, dataset)
    return model


def test_search_starts_from_the_pretrained_weights_and_the_magnitude_mask(jackpot_config, tiny_dense_run):
    model = _prepared(jackpot_config)
    dense = tiny_dense_run.model.state_dict()
    for name, layer in masked_layers(model):
        assert torch.equal(layer.weight, dense[f"{name}.weight"])  # not the random weights it was built with
        assert torch.equal(layer.mask(), magnitude_mask(layer.weight, layer.kept))
    for key, value in model.state_dict().items():
        if key.startswith("body.2."):  # BatchNorm: running statistics and affine come along
            assert torch.equal(value, dense[key])
    assert [n for n, p in model.named_parameters() if p.requires_grad] == [
        f"{n}.scores" for n, _ in masked_layers(model)
    ]


def test_global_threshold_meets_the_target_sparsity(jackpot_run):
    layers = jackpot_run.metrics["layers"]
    sizes = [torch.Size(r["shape"]).numel() for r in layers]
    assert sum(r["sparsity"] * n for r, n in zip(layers, sizes)) / sum(sizes) == pytest.approx(0.9, abs=1e-4)
    assert len({round(r["sparsity"], 3) for r in layers}) > 1


def test_jackpot_reports_its_magnitude_baseline_and_beats_it(jackpot_run, tiny_dense_run):
    report = jackpot_run.metrics["jackpot"]
    assert report["pretrained_test_accuracy"] == pytest.approx(tiny_dense_run.metrics["test_accuracy"])
    assert 0.0 < report["mask_overlap"] < 1.0 and report["classifier"] == "pruned"
    assert jackpot_run.metrics["test_accuracy"] > report["magnitude_test_accuracy"]


def test_batch_norm_statistics_stay_frozen(jackpot_run, tiny_dense_run):
    dense = tiny_dense_run.model.state_dict()
    searched = jackpot_run.model.state_dict()
    assert all(torch.equal(searched[k], dense[k]) for k in dense if "running" in k)


def test_magnitude_method_is_the_first_jackpot_mask(tmp_path, jackpot_config, jackpot_run):
    config = dataclasses.replace(jackpot_config, method="magnitude", epochs=None)
    result = train(config, tmp_path / "m")
    assert result.metrics["jackpot"]["mask_overlap"] == 1.0 and result.metrics["history"] == []
    assert result.metrics["test_accuracy"] == result.metrics["jackpot"]["magnitude_test_accuracy"]
    assert result.metrics["test_accuracy"] == jackpot_run.metrics["jackpot"]["magnitude_test_accuracy"]


def test_jackpot_ticket_reloads_bit_exactly(jackpot_run):
    model, config = load_ticket(jackpot_run.run_dir / "ticket.safetensors")
    x = load_dataset("digits").test.x[:64]
    with torch.no_grad():
        assert torch.equal(model(x), jackpot_run.model(x))
    assert [layer.kept for _, layer in masked_layers(model)] == [r["kept"] for r in jackpot_run.metrics["layers"]]


def test_resumed_jackpot_equals_uninterrupted(tmp_path, jackpot_config, jackpot_run):
    class Interrupt(Exception):
        pass

    def stop(record):
        raise Interrupt

    with pytest.raises(Interrupt):
        train(jackpot_config, tmp_path / "r", on_epoch=stop)
    resumed = train(jackpot_config, tmp_path / "r", resume=True)
    strip = lambda hist: [{k: v for k, v in h.items() if k != "seconds"} for h in hist]  # noqa: E731
    assert strip(resumed.metrics["history"]) == strip(jackpot_run.metrics["history"])
    a, b = load_file(tmp_path / "r" / "ticket.safetensors"), load_file(jackpot_run.run_dir / "ticket.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class FlipCounter(JackpotSearch):
    def __init__(self, config):
        super().__init__(config)
        self.flips: list[int] = []

    def after_step(self, model, progress):
        before = dict(self._masks)
        super().after_step(model, progress)
        self.flips.append(sum(int((self._masks[n] != before[n]).sum()) for n in before))


def test_restriction_bounds_flips_in_the_loop_and_off_is_unbounded(tmp_path, jackpot_config):
    counts = {}
    for name, changes in {"tight": dict(restriction_rate=0.001), "off": dict(restriction=False)}.items():
        config = dataclasses.replace(jackpot_config, epochs=1, **changes)
        hooks = FlipCounter(config)
        train(config, tmp_path / name, hooks=hooks)
        counts[name] = hooks.flips
    assert max(counts["tight"]) <= 2 * 3  # ceil(0.001 * n) = 1 swap per layer, 3 layers
    assert max(counts["off"]) > max(counts["tight"])


def test_plain_state_dict_is_accepted_and_another_architecture_refused(tmp_path, jackpot_config, tiny_dense_run):
    save_file(tiny_dense_run.model.state_dict(), tmp_path / "w.safetensors")
    model = _prepared(dataclasses.replace(jackpot_config, pretrained=str(tmp_path / "w.safetensors")))
    assert torch.equal(model.body[1].weight, tiny_dense_run.model.body[1].weight)
    wrong = {k: v for k, v in tiny_dense_run.model.state_dict().items()}
    wrong["body.1.weight"] = torch.zeros(3, 3)
    save_file(wrong, tmp_path / "wrong.safetensors")
    with pytest.raises(InputError, match=r"does not fit a dense mlp.*body.1.weight has shape \(3, 3\)"):
        _prepared(dataclasses.replace(jackpot_config, pretrained=str(tmp_path / "wrong.safetensors")))


def test_config_round_trips_through_json(jackpot_config):
    assert TrainConfig.from_json(jackpot_config.to_json()) == jackpot_config


def test_recalibrated_magnitude_baseline_is_reported_and_stronger(jackpot_run):
    report = jackpot_run.metrics["jackpot"]
    assert report["magnitude_recalibrated_test_accuracy"] > report["magnitude_test_accuracy"]
