"""Options that several commands share, each defined once: one spelling, one type, one metavar.

Light to import (click, the board catalogue and the device settings only): every command module
reads them at import time, and ``mptc --help`` imports every command module.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from mptc.boards import BOARDS, TARGETS
from mptc.deploy.settings import check_key, parse_address
from mptc.errors import MptcError

F = TypeVar("F", bound=Callable[..., Any])

OUT_FLAGS = ("-o", "--out")
_OLD_OUT = "mptc.out_given_by_old_spelling"  # ctx.meta key: the value of a deprecated spelling


def out_option(help: str, *, folder: bool, old: tuple[str, ...] = ()) -> Callable[[F], F]:
    """``-o/--out PATH``, required: the one spelling of every command's output.

    Each ``old`` spelling stays accepted, hidden from ``--help``, with a warning on stderr. Its
    value reaches ``out`` through ``out``'s default: click processes the options given on the
    command line before those left out, so by the time ``out`` falls back on its default the old
    spelling has already been read.

    Args:
        help: what the command writes there.
        folder: a folder (train, compile, ...) rather than a file (export, optimize).
        old: spellings the option had before, kept for one release.
    """
    path = click.Path(file_okay=not folder, dir_okay=folder, path_type=Path)

    def decorate(function: F) -> F:
        for spelling in old:
            function = click.option(
                spelling,
                f"old_{spelling.lstrip('-').replace('-', '_')}",
                hidden=True,
                expose_value=False,
                callback=_old_out_spelling,
            )(function)
        return click.option(
            *OUT_FLAGS,
            "out",
            type=path,
            required=True,
            default=_out_from_old_spelling,
            callback=_require_out,
            help=help,
        )(function)

    return decorate


def _old_out_spelling(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        click.echo(f"mptc: warning: {param.opts[0]} is deprecated, use {'/'.join(OUT_FLAGS)}", err=True)
        ctx.meta[_OLD_OUT] = value


def _out_from_old_spelling() -> str | None:
    return click.get_current_context().meta.get(_OLD_OUT)


def _require_out(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path:
    # click 8.1 treats a None default as missing, later versions only a default left unset.
    if value is None:
        raise click.MissingParameter(ctx=ctx, param=param)
    if not str(value).strip() or value == Path("."):  # click makes Path("") of an empty value
        raise click.BadParameter("must name a file or folder, got an empty path", ctx=ctx, param=param)
    return value


def target_option(default: str | None = None) -> Callable[[F], F]:
    """``--target``, one of :data:`mptc.boards.TARGETS`; required unless it has a ``default``."""
    if default is None:  # click counts an explicit default=None as a value: leave it out to require the flag
        return click.option(
            "--target", type=click.Choice(TARGETS), required=True, help="Compile target: x86 (this host), arm or cuda."
        )
    return click.option(
        "--target",
        type=click.Choice(TARGETS),
        default=default,
        show_default=True,
        help="Compile target: x86 (this host), arm or cuda.",
    )


def activations_option(calibrated_on: str) -> Callable[[F], F]:
    """``--activations fp32|int8``; ``calibrated_on`` says where int8's ranges come from."""
    return click.option(
        "--activations",
        type=click.Choice(["fp32", "int8"]),
        default="fp32",
        show_default=True,
        help="int8: the real-input (MPT-1/32) layers read uint8 activations, quantized per tensor with ranges "
        f"calibrated on {calibrated_on}; with AVX-512 VNNI, or Armv8.2 dotprod (Pi 5, Orin), they sum them in "
        "integers against 2-bit weight codes (elsewhere the quantization runs as its own op). It changes the "
        "numerics: the reference is the quantized model.",
    )


def board_option() -> Callable[[F], F]:
    """``--board``, one of :data:`mptc.boards.BOARDS`: the board an arm or cuda module is built for."""
    return click.option(
        "--board", type=click.Choice(list(BOARDS)), help="The board whose CPU (arm) or GPU (cuda) to build for."
    )


def emulate_option(help: str) -> Callable[[F], F]:
    """``--emulate BOARD``: a board of :data:`mptc.boards.BOARDS` run under qemu on this machine."""
    return click.option("--emulate", type=click.Choice(list(BOARDS)), help=help)


def _address(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``HOST:PORT`` checked (:func:`mptc.deploy.settings.parse_address`): an empty or malformed
    address is a usage error, never "no address" (which would run on this host instead)."""
    if value is None:
        return None
    try:
        parse_address(value, param.opts[0])
    except MptcError as error:
        raise click.BadParameter(str(error), ctx=ctx, param=param) from error
    return value


def _key(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None or (value == "" and param.default == ""):  # serve-device's default: no tracker key
        return value
    try:
        return check_key(value)
    except MptcError as error:
        raise click.BadParameter(str(error), ctx=ctx, param=param) from error


def rpc_option() -> Callable[[F], F]:
    """``--rpc HOST:PORT``: a TVM RPC server on the board."""
    return click.option(
        "--rpc",
        metavar="HOST:PORT",
        callback=_address,
        help="A TVM RPC server on the board (see `mptc serve-device`).",
    )


def tracker_option(help: str = "A TVM tracker that hands out boards; needs --key.") -> Callable[[F], F]:
    """``--tracker HOST:PORT``: a TVM RPC tracker (profile from one, or register a server with one)."""
    return click.option("--tracker", metavar="HOST:PORT", callback=_address, help=help)


def key_option(default: str | None = None) -> Callable[[F], F]:
    """``--key KEY``: the kind of board, as a TVM tracker names it (one word)."""
    return click.option(
        "--key",
        metavar="KEY",
        default=default,
        callback=_key,
        help="The kind of board at the tracker (e.g. rpi4); with --tracker.",
    )
