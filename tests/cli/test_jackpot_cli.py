import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

from mptc.cli import main


def test_jackpot_then_eval(tmp_path, tiny_dense_run):
    runner = CliRunner()
    out = tmp_path / "j"
    args = [
        "train",
        "--method",
        "jackpot",
        "--pretrained",
        str(tiny_dense_run.run_dir),
        "--width",
        "0.25",
        "--sparsity",
        "0.9",
        "--epochs",
        "1",
        "--out",
        str(out),
    ]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert (
        "sparsity 0.900" in result.output and "magnitude pruning" in result.output and "mask overlap" in result.output
    )
    assert runner.invoke(main, ["eval", str(out)]).exit_code == 0


@pytest.mark.parametrize(
    "args,message,code",
    [
        (["--method", "jackpot"], "pass --pretrained", 2),
        (["--method", "biprop", "--pretrained", "PRE"], "--pretrained applies to", 2),
        (["--method", "jackpot", "--pretrained", "PRE", "--width", "0.5"], "is a mlp of width 0.25", 3),
        (["--method", "jackpot", "--pretrained", "PRE", "--model", "conv2"], "this run is a conv2", 3),
        (["--method", "jackpot", "--pretrained", "OTHER"], "does not fit a dense mlp", 3),
        (["--method", "jackpot", "--pretrained", "MISSING"], "does not exist", 3),
        (["--method", "magnitude", "--pretrained", "PRE", "--epochs", "2"], "one-shot", 2),
        (["--method", "jackpot", "--pretrained", "PRE", "--restriction-rate", "0"], "--restriction-rate", 2),
    ],
)
def test_bad_jackpot_inputs_fail_with_one_clear_line(tmp_path, tiny_dense_run, args, message, code):
    other = tmp_path / "other.safetensors"
    save_file({"fc.weight": torch.zeros(2, 2)}, other)
    paths = {"PRE": str(tiny_dense_run.run_dir), "OTHER": str(other), "MISSING": str(tmp_path / "none")}
    args = [paths.get(a, a) for a in args]
    result = CliRunner().invoke(main, ["train", "--width", "0.25", "--out", str(tmp_path / "r"), *args])
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert len([line for line in result.output.splitlines() if "rror" in line]) == 1
