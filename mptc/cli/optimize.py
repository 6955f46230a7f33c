"""``mptc optimize`` and ``mptc inspect``: pack an exported ONNX model, and look inside one."""

from __future__ import annotations

from pathlib import Path

import click

from mptc.cli.options import out_option
from mptc.io import write_bytes

_MODEL = click.Path(dir_okay=False, path_type=Path)


@click.command("optimize")
@click.argument("model", type=_MODEL)
@out_option("Where to write the packed ONNX model.", folder=False)
@click.option("-v", "--verbose", is_flag=True, help="Also list each layer or node a pass left as it is, and why.")
def optimize_command(model: Path, out: Path, verbose: bool) -> None:
    """Pack the ternary layers of an exported ONNX MODEL into ai.mptc bit operators.

    Conv/Gemm/MatMul weights holding {-a, 0, +a} per output channel become 2-bit sign+mask
    planes (about 1/16 of float32); a preceding sign with sign(0) = +1 (Where(x >= 0, 1, -1),
    Larq's Sign(Sign(x) + c), 2 * Cast(x >= 0) - 1, QONNX BipolarQuant with scale 1; see
    docs/operators.md) becomes input_mode=binary; a following BatchNormalization folds into the per-channel scale and bias.
    The result runs in onnxruntime as it is (the ops carry ONNX function bodies).

    \b
    Example:
      mptc optimize runs/mlp/model.onnx -o runs/mlp/packed.onnx
      mptc optimize -v runs/mlp/model.onnx -o runs/mlp/packed.onnx   # why a layer stayed float
      mptc inspect runs/mlp/packed.onnx
    """
    from mptc.passes.inspect import inspect_model
    from mptc.passes.pipeline import load_model, optimize

    packed = optimize(load_model(model), on_skip=click.echo if verbose else None)
    rows = inspect_model(packed)  # before writing: a model that inspect refuses is not written
    write_bytes(out, packed.SerializeToString())
    packed = sum(1 for row in rows if row.op.startswith("Binary"))
    click.echo(f"wrote {out}: {packed} packed layer(s), {sum(row.bytes for row in rows):,} parameter bytes")


@click.command("inspect")
@click.argument("model", type=_MODEL)
@click.option("--plain", is_flag=True, help="Aligned plain text instead of a Markdown table.")
def inspect_command(model: Path, plain: bool) -> None:
    """Show each weight layer of an ONNX MODEL, packed or not.

    Columns: op, input mode of a packed layer (real, or binary when the sign before it was
    folded in), weight shape, sparsity (fraction pruned), alpha / scale range, storage bits per
    weight and parameter bytes, with a total. Run it before and after `mptc optimize` to compare.

    \b
    Example:
      mptc inspect runs/mlp/model.onnx
      mptc inspect --plain runs/mlp/packed.onnx
    """
    from mptc.passes.inspect import inspect_model, render_table
    from mptc.passes.pipeline import load_model

    click.echo(render_table(inspect_model(load_model(model)), markdown=not plain))
