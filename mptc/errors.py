"""Typed errors: the library raises them with context, the CLI turns each into one line.

Exit codes are part of the CLI's contract (documented in the README):
1 internal error (a bug: the traceback is shown), 2 bad command-line usage (click's own),
3 bad input file or data, 4 unsupported model/op/target, 5 numeric verification failed,
6 device or RPC failure, 7 output could not be written.
"""

from __future__ import annotations


class MptcError(Exception):
    """Base of all user-facing errors; ``exit_code`` is what the CLI exits with."""

    exit_code = 3


class UsageError(MptcError):
    """A command-line value that cannot mean anything (an empty output path); click's own are exit 2 too."""

    exit_code = 2


class InputError(MptcError):
    """An input file, directory or data set is missing, corrupt, truncated or of the wrong kind."""

    exit_code = 3


class UnsupportedError(MptcError):
    """A model, operator, option or target that mptc does not handle (named in the message)."""

    exit_code = 4


class VerificationError(MptcError):
    """Two stages that must agree numerically do not (e.g. PyTorch vs onnxruntime)."""

    exit_code = 5


class DeviceError(MptcError):
    """A board, RPC server or tracker could not be reached or failed mid-run."""

    exit_code = 6


class OutputError(MptcError):
    """An output path cannot be written (permissions, full disk, a file where a folder must be)."""

    exit_code = 7


def first_line(error: BaseException) -> str:
    """A one-line description of ``error`` for a message (its type when it says nothing)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
