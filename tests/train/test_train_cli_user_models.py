"""``mptc train`` with a user's model: --model PACKAGE.MODULE:FACTORY and the flags that go with it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from mptc.cli import main
from mptc.cli.train import parse_input_shape

MPTC = Path(sys.executable).with_name("mptc")


@pytest.mark.parametrize(
    ("text", "shape"),
    [("3x32x32", (3, 32, 32)), ("8x3x32x32", (3, 32, 32)), ("Nx1x8x8", (1, 8, 8)), ("64", (64,)), ("3,8,8", (3, 8, 8))],
)
def test_input_shapes_are_one_sample_and_drop_a_batch(text, shape):
    assert parse_input_shape(text) == shape


@pytest.mark.parametrize("text", ["3xAx3", "0x8x8", "1x2x3x4x5", ""])
def test_bad_input_shapes_are_usage_errors(text):
    with pytest.raises(click.BadParameter):
        parse_input_shape(text)


def test_the_new_flags_reach_the_run_s_config(tmp_path):
    out = tmp_path / "run"
    args = ["train", "--model", "tests.models.user_nets:TinyResNet", "--model-args", '{"width": 4, "act": "hardtanh"}']
    args += ["--dataset", "synthetic", "--input-shape", "1x8x8", "--binary-act-before", "layer2.*", "--epochs", "2"]
    args += [
        "--warmup-epochs",
        "1",
        "--momentum",
        "0.8",
        "--label-smoothing",
        "0.1",
        "--optimizer",
        "sgd",
        "-o",
        str(out),
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "tests.models.user_nets:TinyResNet biprop (binary activations) on synthetic:1x8x8" in result.output
    config = json.loads((out / "config.json").read_text())
    assert config["model_args"] == {"width": 4, "act": "hardtanh"} and config["input_shape"] == [1, 8, 8]
    assert config["binary_act"] and config["binary_act_before"] == ["layer2.*"]
    assert (config["warmup_epochs"], config["momentum"], config["label_smoothing"]) == (1, 0.8, 0.1)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "alexnet"], "neither one of mlp"),
        (["--model", "tests.models.user_nets:TinyResNet", "--model-args", "{width: 4}"], "not JSON"),
        (["--model", "tests.models.user_nets:TinyResNet", "--model-args", "[4]"], "expected a JSON object"),
        (["--model-args", '{"width": 4}'], "applies to import-path models"),
        (["--binary-act-before", "layer1.*"], "import-path model"),
        (["--warmup-epochs", "5", "--epochs", "5"], "fewer than --epochs"),
    ],
)
def test_bad_user_model_flags_are_usage_errors(tmp_path, args, message):
    result = CliRunner().invoke(main, ["train", *args, "-o", str(tmp_path / "run")])
    assert result.exit_code == 2 and message in result.output, result.output


def test_a_model_module_in_the_current_folder_trains_and_evaluates_through_the_script(tmp_path):
    (tmp_path / "mynet.py").write_text(
        textwrap.dedent(
            """
            from torch import nn

            def build(classes=10):
                return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, classes))
            """
        )
    )
    train = [MPTC, "train", "--model", "mynet:build", "--dataset", "synthetic:1x8x8", "--epochs", "1", "-o", "run"]
    trained = subprocess.run(train, cwd=tmp_path, capture_output=True, text=True)
    assert trained.returncode == 0, trained.stderr
    evaluated = subprocess.run([MPTC, "eval", "run"], cwd=tmp_path, capture_output=True, text=True)
    assert evaluated.returncode == 0 and "test accuracy" in evaluated.stdout, evaluated.stderr
    missing = subprocess.run(
        [*train[:3], "nosuchnet:build", *train[4:-1], "run2"], cwd=tmp_path, capture_output=True, text=True
    )
    assert missing.returncode == 3 and "cannot import 'nosuchnet'" in missing.stderr
