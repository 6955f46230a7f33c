"""Recipe defaults against shared/notes/algorithms.md, warm-up, and config files of older runs."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from mptc.config import TrainConfig, parse_config
from mptc.errors import InputError
from mptc.train.config import resolve
from mptc.train.loop import make_scheduler, train, warmup_cosine

CIFAR = "cifar10:/data/cifar"
IMAGENET = "imagefolder:/data/imagenet"


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (TrainConfig(model="conv4", dataset=CIFAR), dict(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4)),
        (TrainConfig(model="conv4", dataset=CIFAR), dict(batch_size=128, epochs=100, warmup_epochs=0)),
        (TrainConfig(model="resnet18", dataset=CIFAR), dict(lr=0.1, weight_decay=5e-4, batch_size=256, epochs=100)),
        (TrainConfig(model="conv4", dataset=CIFAR, binary_act=True), dict(optimizer="adam", lr=0.1, epochs=100)),
        (TrainConfig(model="vgg-small", dataset=CIFAR, binary_act=True), dict(optimizer="adam", lr=2e-4)),
        (
            TrainConfig(model="resnet18", method="jackpot", pretrained="r", dataset=CIFAR),
            dict(optimizer="sgd", lr=0.1, weight_decay=5e-4, epochs=30),
        ),
        (
            TrainConfig(model="resnet18", method="jackpot", pretrained="r", dataset=IMAGENET),
            dict(optimizer="sgd", lr=0.1, weight_decay=1e-4, epochs=30),
        ),
        (
            TrainConfig(model="resnet18", dataset=IMAGENET),
            dict(optimizer="sgd", lr=0.256, momentum=0.875, weight_decay=3.05e-5, batch_size=256),
        ),
        (TrainConfig(model="resnet18", dataset=IMAGENET), dict(warmup_epochs=5, label_smoothing=0.1, epochs=100)),
        (TrainConfig(), dict(optimizer="adam", lr=0.01, momentum=0.9, label_smoothing=0.0, warmup_epochs=0)),
    ],
)
def test_recipe_defaults_follow_the_papers(config, expected):
    resolved = resolve(config)
    assert {key: getattr(resolved, key) for key in expected} == expected


def test_explicit_settings_win_over_the_recipe():
    resolved = resolve(TrainConfig(model="resnet18", dataset=IMAGENET, momentum=0.5, label_smoothing=0.0))
    assert (resolved.momentum, resolved.label_smoothing, resolved.warmup_epochs) == (0.5, 0.0, 5)


def test_warmup_rises_linearly_then_follows_the_cosine():
    factors = [warmup_cosine(epoch, 2, 6) for epoch in range(6)]
    assert factors[:3] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert factors[3:] == pytest.approx([(1 + math.cos(math.pi * k / 4)) / 2 for k in (1, 2, 3)])


def test_the_scheduler_applies_the_warmup_and_without_one_stays_cosine_annealing():
    parameter = torch.nn.Parameter(torch.zeros(1))
    config = resolve(TrainConfig(epochs=6, warmup_epochs=2, lr=0.3))
    optimizer = torch.optim.SGD([parameter], lr=config.lr)
    scheduler = make_scheduler(config, optimizer)
    seen = []
    for _ in range(6):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([0.3 * warmup_cosine(epoch, 2, 6) for epoch in range(6)])
    plain = make_scheduler(resolve(TrainConfig(epochs=6)), torch.optim.SGD([parameter], lr=0.3))
    assert isinstance(plain, torch.optim.lr_scheduler.CosineAnnealingLR)


def test_warmup_must_leave_epochs_to_anneal():
    with pytest.raises(ValueError, match="fewer than --epochs"):
        TrainConfig(epochs=3, warmup_epochs=3)
    with pytest.raises(InputError, match="fewer than --epochs"):
        resolve(TrainConfig(warmup_epochs=50))  # 40 epochs by default on digits


@pytest.mark.parametrize(("field", "value"), [("momentum", 1.0), ("label_smoothing", -0.1), ("warmup_epochs", -1)])
def test_out_of_range_optimiser_settings_are_refused(field, value):
    with pytest.raises(ValueError, match=field.replace("_", "-")):
        TrainConfig(**{field: value})


def test_a_warmed_up_label_smoothed_run_resumes_bit_identically(tmp_path):
    config = TrainConfig(width=0.25, epochs=3, warmup_epochs=1, label_smoothing=0.1, optimizer="sgd", momentum=0.8)
    whole = train(config, tmp_path / "whole")

    class Interrupted(Exception):
        pass

    def stop(record: dict) -> None:
        if record["epoch"] == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        train(config, tmp_path / "split", on_epoch=stop)
    resumed = train(config, tmp_path / "split", resume=True)
    whole_ticket, split_ticket = (load_file(tmp_path / run / "ticket.safetensors") for run in ("whole", "split"))
    assert whole_ticket.keys() == split_ticket.keys()
    assert all(torch.equal(whole_ticket[key], split_ticket[key]) for key in whole_ticket)
    assert [r["lr"] for r in resumed.metrics["history"]] == [r["lr"] for r in whole.metrics["history"]]


def test_a_config_json_written_before_the_new_fields_reads_back_and_resumes(tmp_path, tiny_config):
    old = resolve(tiny_config).to_json()
    for field in ("model_args", "input_shape", "pretrained_sha256", "binary_act_before", "warmup_epochs"):
        old.pop(field)
    old["momentum"], old["label_smoothing"] = 0.9, 0.0  # the old defaults, always written
    config = parse_config(json.dumps(old), "config.json")
    assert config.model_args == {} and config.input_shape is None and config.binary_act_before == ()
    run = tmp_path / "old"
    train(config, run, on_epoch=None)
    (run / "config.json").write_text(json.dumps(old))
    (run / "ticket.safetensors").unlink()
    train(config, run, resume=True)  # the stored settings are those of this run
