"""``mptc compile``: a packed ONNX model -> a TVM module folder for x86, ARM or CUDA."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click

from mptc.cli.options import activations_option, board_option, out_option, target_option
from mptc.cli.progress import StageBar
from mptc.io import read_array


@dataclass(frozen=True)
class CompileOptions:
    model: Path
    target: str
    board: str | None
    target_json: Path | None
    out: Path
    input_shape: tuple[int, ...] | None
    activations: str
    calibration: Path | None


def _shape(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    """``N,C,H,W`` -> a tuple of positive ints."""
    if value is None:
        return None
    try:
        shape = tuple(int(part) for part in value.split(","))
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1:
        raise click.BadParameter(f"expected positive integers separated by commas (e.g. 8,3,224,224), got {value!r}")
    return shape


@click.command("compile")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@target_option()
@board_option()
@click.option(
    "--target-json", type=click.Path(dir_okay=False, path_type=Path), help="A TVM target dict (JSON) to use instead."
)
@click.option(
    "--input-shape",
    metavar="N,C,H,W",
    callback=_shape,
    help="The input shape to compile for where the model's is symbolic (a batch of 8: 8,3,224,224); "
    "it must agree with every static dimension. Default: a symbolic batch is 1.",
)
@activations_option("--calibration")
@click.option(
    "--calibration",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Samples of the model's input for --activations int8: a .npz holding one float32 array "
    "(or one named x) of shape samples x the input's shape past the batch, or a .npy.",
)
@out_option("Output folder.", folder=True)
def compile_command(
    model: Path,
    target: str,
    board: str | None,
    target_json: Path | None,
    input_shape: tuple[int, ...] | None,
    activations: str,
    calibration: Path | None,
    out: Path,
) -> None:
    """Compile MODEL (packed ONNX, ai.mptc layers) with TVM into OUT/.

    OUT/ gets module.so, manifest.json (target, per-layer kernel and why, sizes, versions) and
    reference.npz (sample input x, expected output y); CUDA adds module.cu. A model whose ternary
    Conv/Gemm are not packed yet goes through `mptc optimize`'s pipeline first (written as
    OUT/packed.onnx, the model the manifest then describes).

    OUT/ is written as a whole: a folder from an earlier compile is replaced only once the new
    one is complete, and a failed compile leaves it as it was. A folder holding other files is
    refused.

    \b
    Example:
      mptc compile runs/mlp/packed.onnx --target x86 -o runs/mlp/x86
      mptc compile runs/mlp/packed.onnx --target arm --board rpi4 -o runs/mlp/rpi4
      mptc compile resnet18.onnx --target x86 --input-shape 8,3,224,224 -o runs/resnet18/x86-b8
      mptc compile runs/mlp/packed.onnx --activations int8 --calibration digits.npz -o runs/mlp/int8
    """
    from mptc.api import compile as compile_to  # deferred: importing TVM takes seconds
    from mptc.targets.compile import STAGES

    options = CompileOptions(model, target, board, target_json, out, input_shape, activations, calibration)
    if (activations == "int8") != (calibration is not None):
        raise click.UsageError("--activations int8 and --calibration FILE go together: give both or neither")
    samples = read_array(calibration, "x", "the calibration samples")[1] if calibration is not None else None

    def say_packing(layers: list[str], kept_as: Path) -> None:
        click.echo(f"packing {len(layers)} ternary layer(s) first ({', '.join(layers)}) into {kept_as}", err=True)

    with StageBar(STAGES, title="compile") as stage:
        manifest = compile_to(
            options.model,
            target=options.target,
            out=options.out,
            board=options.board,
            target_json=options.target_json,
            on_stage=stage,
            on_pack=say_packing,
            input_shape=options.input_shape,
            calibration=samples,
        )
    kernels = ", ".join(f"{layer['name']}: {layer['kernel']}" for layer in manifest.layers) or "no ai.mptc layers"
    click.echo(f"wrote {options.out}/ for {manifest.target.family} ({kernels})")
    sizes = manifest.sizes
    click.echo(
        f"module.so {sizes.module_bytes:,} B (the weights as its kernels read them: {sizes.lowered_weight_bytes:,} B; "
        f"packed in the model: {sizes.packed_weight_bytes:,} B; source model {sizes.source_model_bytes:,} B)"
    )
