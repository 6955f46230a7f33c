import json

from click.testing import CliRunner

from mptc.cli import main


def test_construct_sweep_writes_table_json_and_plot(tmp_path, tiny_dense_run):
    out = tmp_path / "a"
    args = [
        "approximate",
        str(tiny_dense_run.run_dir),
        "--route",
        "construct",
        "--width-factor",
        "1,2,4",
        "--precision",
        "6",
        "--out",
        str(out),
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "| construct | 4 |" in result.output
    report = json.loads((out / "approximation.json").read_text())
    errors = [row["mean_distance"] for row in report["rows"]]
    assert errors == sorted(errors, reverse=True) and errors[-1] < errors[0] / 4
    assert report["rows"][-1]["argmax_agreement"] > 0.9
    assert (out / "approximation.md").read_text().startswith("construct route: integer form at P = 6 bits")
    assert (out / "approximation.png").read_bytes()[:4] == b"\x89PNG"


def test_bad_inputs_fail_with_one_clear_line(tmp_path, tiny_run):
    runner = CliRunner()
    result = runner.invoke(
        main, ["approximate", str(tiny_run.run_dir), "--width-factor", "1,x", "--out", str(tmp_path / "a")]
    )
    assert result.exit_code == 2 and "comma-separated" in result.output and "Traceback" not in result.output
    result = runner.invoke(main, ["approximate", str(tiny_run.run_dir), "--out", str(tmp_path / "a")])
    assert result.exit_code == 3 and "needs a --model mlp --method dense run" in result.output
    result = runner.invoke(main, ["approximate", str(tmp_path / "none"), "--out", str(tmp_path / "a")])
    assert result.exit_code == 3 and "not a finished run" in result.output
