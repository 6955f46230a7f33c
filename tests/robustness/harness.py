"""What every refused input must look like, the fuzzing settings, and the count of bad inputs tried."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import socket
import stat
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, settings

from mptc.cli import main

DOCUMENTED_EXIT_CODES = frozenset({2, 3, 4, 5, 6, 7})
"""README, "What happens when things go wrong"; 1 means a bug in mptc."""

FUZZ = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,  # the same inputs every run: CI never flakes on a new example
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
"""Hypothesis settings of the suite; a test raises ``max_examples`` where its cases are cheap."""

_TRIED: set[str] = set()


def record(*parts: bytes | str) -> None:
    """Count one bad input (identified by its content and the command it was fed to)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part if isinstance(part, bytes) else part.encode())
        digest.update(b"\0")
    _TRIED.add(digest.hexdigest())


def tried() -> int:
    return len(_TRIED)


def invoke(args: list[str]) -> Result:
    """Run ``mptc ARGS`` in-process as a user would (stderr apart from stdout)."""
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_refused(
    result: Result, *outputs: Path, codes: frozenset[int] = DOCUMENTED_EXIT_CODES, stdout: bool = False
) -> None:
    """A refused input: a documented exit code, one error line, no traceback, no output left.

    Click's own usage errors (exit 2) are click's few lines ending in ``Error: ...``; everything
    else ends in exactly one ``mptc: error: ...`` line, the last line on stderr. Nothing is on
    stdout, unless ``stdout`` says the command's normal output may have begun (a training run's
    epochs, printed before the disk filled up). An output that was not written must not exist,
    and no temporary file of it may be left beside it.
    """
    where = "".join(traceback.format_exception(*result.exc_info)) if result.exc_info and result.exit_code == 1 else ""
    assert result.exit_code in codes, (
        f"exit {result.exit_code}, expected one of {sorted(codes)}:\n{result.output}\n{where}"
    )
    # Python's own header: a drawn hostile input may contain the bare word (a tracker key "Traceback")
    assert "Traceback (most recent call last)" not in result.output
    assert stdout or not result.stdout, f"a refused command wrote on stdout:\n{result.stdout}"
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    if result.exit_code == 2 and lines and lines[-1].startswith("Error: "):
        assert sum(line.startswith("Error: ") for line in lines) == 1, result.stderr
    else:
        errors = [line for line in lines if line.startswith("mptc: error: ")]
        assert len(errors) == 1 and lines[-1] == errors[0], (
            f"expected one 'mptc: error:' line last, got:\n{result.stderr}"
        )
    for output in outputs:
        assert not output.exists(), f"{output} was left behind by a failed command"
        assert not list(output.parent.glob(f".{output.name}.*.tmp")), f"a temporary file of {output} was left behind"


@contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Fail with :class:`TimeoutError` instead of hanging (a read of a FIFO blocks until a writer
    comes): SIGALRM interrupts the blocked call in the main thread."""

    def expire(_signum, _frame):
        raise TimeoutError(f"still running after {seconds} s: a read blocked")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def damage_bytes(data: bytes, how: str, numbers: tuple[int, ...]) -> bytes:
    """``data`` truncated, with 1-16 bits flipped, or replaced by random bytes, as ``how`` says;
    ``numbers`` (drawn by hypothesis) pick the cut, the bits or the seed and length."""
    if how == "truncate":
        return data[: numbers[0] % len(data)]
    if how == "random":
        return random.Random(numbers[0]).randbytes(numbers[1] % 512)
    flipped = bytearray(data)
    for number in numbers:
        bit = number % (8 * len(data))
        flipped[bit // 8] ^= 1 << (bit % 8)
    return bytes(flipped)


def make_special(path: Path, kind: str) -> socket.socket | None:
    """Something other than a regular file at ``path``: a FIFO, a character device (a /dev/null of
    our own), a socket, a folder, or a link to a file, a FIFO or a folder, or a dangling one.
    Returns what must stay open (a socket's server)."""
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        try:
            os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("making a device node needs root")
    elif kind == "socket":
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
        return server
    elif kind == "folder":
        path.mkdir()
    else:
        pointee = path.parent / "pointee"
        if kind == "link to a file":
            pointee.write_bytes(b"not to be replaced")
        elif kind == "link to a fifo":
            os.mkfifo(pointee)
        elif kind == "link to a folder":
            pointee.mkdir()
        path.symlink_to(pointee)
    return None
