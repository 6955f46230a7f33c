import click
import pytest
from click.testing import CliRunner

from mptc.cli import main


def test_every_command_has_teaching_help():
    runner = CliRunner()
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0 and "Commands:" in result.output
    for name in main.list_commands(click.Context(main)):
        sub = runner.invoke(main, [name, "--help"])
        assert sub.exit_code == 0, name
        assert "Example" in sub.output, f"mptc {name} --help shows no example"


def test_train_then_eval(tmp_path):
    runner = CliRunner()
    out = tmp_path / "run"
    result = runner.invoke(main, ["train", "--width", "0.25", "--epochs", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "test accuracy" in result.output and "sparsity 0.500" in result.output
    result = runner.invoke(main, ["eval", str(out)])
    assert result.exit_code == 0 and "test accuracy" in result.output


@pytest.mark.parametrize(
    "args,message,code",
    [
        (["--sparsity", "1.5"], "fraction pruned", 2),
        (["--model", "alexnet"], "alexnet", 2),
        (["--dataset", "cifar10:/no/such/dir"], "does not exist", 3),
        (["--epochs", "0"], "--epochs", 2),
    ],
)
def test_bad_flags_fail_with_one_clear_line(tmp_path, args, message, code):
    result = CliRunner().invoke(main, ["train", "--out", str(tmp_path / "r"), *args])
    assert result.exit_code == code
    assert message in result.output
    assert "Traceback" not in result.output


def test_eval_of_missing_run(tmp_path):
    result = CliRunner().invoke(main, ["eval", str(tmp_path / "nothing")])
    assert result.exit_code == 3 and "does not exist" in result.output
