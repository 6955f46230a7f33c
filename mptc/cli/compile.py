"""``mptc compile``: a packed ONNX model -> a TVM module folder for x86, ARM or CUDA."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click

from mptc.boards import BOARDS, TARGETS
from mptc.targets.compile import compile_model
from mptc.targets.target import resolve_target

PACKED_FILE = "packed.onnx"


@dataclass(frozen=True)
class CompileOptions:
    model: Path
    target: str
    board: str | None
    target_json: Path | None
    out: Path


@click.command("compile")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--target", type=click.Choice(TARGETS), required=True, help="x86 (this host), arm or cuda.")
@click.option("--board", type=click.Choice(list(BOARDS)), help="The board whose CPU (arm) or GPU (cuda) to build for.")
@click.option(
    "--target-json", type=click.Path(dir_okay=False, path_type=Path), help="A TVM target dict (JSON) to use instead."
)
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Output folder.")
def compile_command(model: Path, target: str, board: str | None, target_json: Path | None, out: Path) -> None:
    """Compile MODEL (packed ONNX, ai.mptc layers) with TVM into OUT/.

    OUT/ gets module.so, manifest.json (target, per-layer kernel and why, sizes, versions) and
    reference.npz (sample input x, expected output y); CUDA adds module.cu. A model whose ternary
    Conv/Gemm are not packed yet goes through `mptc optimize`'s pipeline first (written as
    OUT/packed.onnx, the model the manifest then describes).

    \b
    Example:
      mptc compile runs/mlp/packed.onnx --target x86 -o runs/mlp/x86
      mptc compile runs/mlp/packed.onnx --target arm --board rpi4 -o runs/mlp/rpi4
    """
    options = CompileOptions(model, target, board, target_json, out)
    resolve_target(options.target, options.board, options.target_json)  # fail on a bad target before packing
    manifest = compile_model(
        _packed(options.model, options.out), options.target, options.out, options.board, options.target_json
    )
    kernels = ", ".join(f"{layer['name']}: {layer['kernel']}" for layer in manifest["layers"]) or "no ai.mptc layers"
    click.echo(f"wrote {options.out}/ for {manifest['target']['family']} ({kernels})")


def _packed(path: Path, out: Path) -> Path:
    """``path``, or ``out/packed.onnx`` from ``mptc.passes.pipeline`` if it has unpacked ternary layers."""
    try:
        from mptc.passes.inspect import inspect_model
        from mptc.passes.pipeline import load_model, optimize_file
    except ImportError:
        click.echo("mptc: note: mptc.passes is not available; compiling the model as it is", err=True)
        return path
    unpacked = [
        row.name
        for row in inspect_model(load_model(path))
        if not row.op.startswith("Binary") and row.scale_min is not None
    ]
    if not unpacked:
        return path
    packed = out / PACKED_FILE
    click.echo(f"packing {len(unpacked)} ternary layer(s) first ({', '.join(unpacked)}) into {packed}", err=True)
    optimize_file(path, packed)
    return packed
