"""``mptc export``: a run's ticket -> ONNX with frozen sparse +-alpha weights."""

from __future__ import annotations

from pathlib import Path

import click

from mptc.cli.options import out_option


@click.command("export")
@click.argument("run_dir", type=click.Path(path_type=Path))
@out_option("ONNX file to write.", folder=False, old=("--output",))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["onnx", "qonnx"]),
    default="onnx",
    show_default=True,
    help="onnx: standard opset, runs anywhere; qonnx: Quant/BipolarQuant interchange form for FINN/hls4ml/Brevitas.",
)
@click.option(
    "--opset", type=click.IntRange(17, 23), default=18, show_default=True, help="ONNX opset of the exported graph."
)
def export(run_dir: Path, out: Path, fmt: str, opset: int) -> None:
    """Freeze a ticket to ONNX and check it against PyTorch in onnxruntime.

    Masked layers become plain Conv/Gemm with ternary {-a, 0, +a} (MPT) or masked real
    (edge-popup) weights, binary activations become Where(x >= 0, 1, -1) (sign(0) = +1) and
    BatchNorm stays BatchNormalization. Method, per-layer sparsity and alpha, seed and the
    accuracy measured at export go into metadata_props. Fails (exit 5) if onnxruntime and
    PyTorch disagree.

    \b
    Examples:
      mptc export runs/mlp-mpt -o runs/mlp-mpt/model.onnx
      mptc export runs/mlp-mpt -o mlp.qonnx.onnx --format qonnx
    """
    from mptc.export import export_run

    report = export_run(run_dir, out, fmt=fmt, opset=opset)
    click.echo(
        f"wrote {report.path}: PyTorch vs onnxruntime max abs diff {report.max_abs_diff:.2e}, "
        f"argmax agreement {report.argmax_agreement:.1%} on {report.samples} held-out samples; "
        f"test accuracy PyTorch {report.pytorch_accuracy:.4f}, ONNX {report.onnx_accuracy:.4f}"
    )
