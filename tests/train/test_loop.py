import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file

from mptc.config import TrainConfig
from mptc.errors import InputError, OutputError, VerificationError
from mptc.train.loop import train


def test_run_directory_holds_ticket_config_and_metrics(tiny_run):
    root = tiny_run.run_dir
    assert {p.name for p in root.iterdir()} >= {"ticket.safetensors", "config.json", "metrics.json", "checkpoint.pt"}
    metrics = json.loads((root / "metrics.json").read_text())
    assert metrics["method"] == "biprop" and metrics["sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert len(metrics["history"]) == 3 and {"train_loss", "test_accuracy"} <= set(metrics["history"][0])
    assert metrics["test_accuracy"] > 0.8  # three epochs of a quarter-width ticket already learn digits
    assert metrics["ticket_bytes"] * 10 < metrics["fp32_bytes"]
    assert TrainConfig.from_json(json.loads((root / "config.json").read_text())).epochs == 3


def test_same_seed_same_result(tmp_path, tiny_config):
    a = train(tiny_config, tmp_path / "a").metrics
    b = train(tiny_config, tmp_path / "b").metrics
    assert [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in b["history"]]


class Interrupt(Exception):
    pass


def test_resume_after_interruption_equals_uninterrupted(tmp_path, tiny_config, tiny_run):
    config = dataclasses.replace(tiny_config)

    def stop_after_two(record):
        if record["epoch"] == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(config, tmp_path / "r", on_epoch=stop_after_two)
    assert not (tmp_path / "r" / "ticket.safetensors").exists()
    resumed = train(config, tmp_path / "r", resume=True)
    strip = lambda hist: [{k: v for k, v in h.items() if k != "seconds"} for h in hist]  # noqa: E731
    assert strip(resumed.metrics["history"]) == strip(tiny_run.metrics["history"])
    resumed_ticket = load_file(tmp_path / "r" / "ticket.safetensors")
    reference_ticket = load_file(tiny_run.run_dir / "ticket.safetensors")
    assert resumed_ticket.keys() == reference_ticket.keys()
    assert all(torch.equal(resumed_ticket[k], reference_ticket[k]) for k in reference_ticket)


def test_existing_run_is_not_overwritten(tiny_run, tiny_config):
    with pytest.raises(OutputError, match="already holds a run"):
        train(tiny_config, tiny_run.run_dir)


def test_resume_with_changed_settings_is_refused(tiny_run, tiny_config):
    with pytest.raises(InputError, match="sparsity"):
        train(dataclasses.replace(tiny_config, sparsity=0.9), tiny_run.run_dir, resume=True)


def test_dense_baseline_trains_weights(tmp_path):
    result = train(TrainConfig(model="mlp", method="dense", width=0.25, epochs=2), tmp_path / "d")
    assert result.metrics["sparsity"] == 0.0 and result.metrics["test_accuracy"] > 0.8
    assert all(p.requires_grad for p in result.model.parameters())


@pytest.mark.parametrize("field,value", [("sparsity", 1.5), ("model", "alexnet"), ("epochs", 0), ("init", "xavier")])
def test_bad_settings_are_rejected_with_a_message(field, value):
    with pytest.raises(ValueError, match=field if field != "init" else "unknown init"):
        TrainConfig(**{field: value})


def test_cuda_without_gpu_is_a_clear_error(tmp_path, tiny_config):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    from mptc.errors import UnsupportedError

    with pytest.raises(UnsupportedError, match="CUDA"):
        train(dataclasses.replace(tiny_config, device="cuda"), tmp_path / "c")


def test_a_last_batch_of_one_sample_joins_the_one_before(tmp_path, tiny_config):
    # digits has 1,437 training samples: batches of 4 leave one, which BatchNorm cannot normalise
    config = dataclasses.replace(tiny_config, batch_size=4, epochs=1)
    loss = train(config, tmp_path / "run").metrics["history"][0]["train_loss"]
    assert 0.0 < loss < 10.0  # False for NaN


def test_a_diverging_loss_stops_training_with_a_verification_error(tmp_path, tiny_config):
    config = dataclasses.replace(tiny_config, epochs=1, method="dense", lr=1e30, optimizer="sgd")
    with pytest.raises(VerificationError, match="NaN or Inf"):
        train(config, tmp_path / "run")


def test_a_run_folder_takes_one_training_at_a_time(tmp_path, tiny_config):
    import fcntl
    import os

    root = tmp_path / "run"
    root.mkdir()
    held = os.open(root, os.O_RDONLY | os.O_DIRECTORY)  # as a first `mptc train` into it holds it
    try:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(OutputError, match="another mptc train is writing to"):
            train(tiny_config, root)
        assert list(root.iterdir()) == []
    finally:
        os.close(held)
    assert train(dataclasses.replace(tiny_config, epochs=1), root).metrics["test_accuracy"] > 0


def test_a_refused_run_leaves_no_folder_behind(tmp_path, tiny_config):
    with pytest.raises(InputError):
        train(dataclasses.replace(tiny_config, dataset="cifar10:/nonexistent"), tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"width": 1e9}, "--width must be a positive number of at most 64"),
        ({"model": "tests.models.user_nets:TinyResNet", "input_shape": (100000, 100000)}, "at most 67,108,864 values"),
    ],
)
def test_configurations_that_would_allocate_without_bound_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**change)
