"""Atomic file writes, and bounded reads of regular files: the one place mptc touches a path.

Writes. Everything mptc writes (checkpoints, tickets, configs, metrics, reports, models) goes
through :func:`atomic_path`: write to a temporary file in the same folder, fsync, then
``os.replace``, so a reader sees the old file or the new one, never half of either. The rule for
the path, the same for every output:

* It names a file: an empty path, or one whose last part is ``.`` or ``..`` (what ``--out ''``
  becomes), is a usage error (:class:`~mptc.errors.UsageError`, exit 2).
* A target that exists must be a regular file; it is replaced. Anything else there is left as it
  is and the write is refused (:class:`~mptc.errors.OutputError`, exit 7): a symbolic link (the
  rename would replace the link, not what it points to), a folder, a FIFO, a socket or a device
  (as root, ``-o /dev/null`` would otherwise replace the system's ``/dev/null`` with a file).
* A new file gets the mode ``open()`` would give it, ``0o666 & ~umask`` (the temporary file
  starts as ``mkstemp``'s 0600).

Reads. :func:`read_regular_file` opens without blocking, refuses anything but a regular file (a
FIFO would block the command forever, a device never ends) and a file larger than the caller's
bound, before reading a byte: :class:`~mptc.errors.InputError`, exit 3.

Folders. A command whose output is a set of files read together (``mptc compile``'s OUT/) writes
them into a temporary folder beside it and swaps that in whole (:func:`atomic_folder`), so a
reader never sees files of two runs side by side; it refuses a folder holding files it did not
write (:func:`output_folder`), since those would go with the swap.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from collections.abc import Collection, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np

from mptc.errors import InputError, OutputError, UsageError, first_line

NEW_FILE_MODE = 0o666
"""A new output's mode before the umask, as ``open()`` and the shell create files."""

_KINDS = {
    stat.S_ISDIR: "a folder",
    stat.S_ISFIFO: "a FIFO (named pipe)",
    stat.S_ISSOCK: "a socket",
    stat.S_ISCHR: "a character device",
    stat.S_ISBLK: "a block device",
}


def file_kind(mode: int) -> str:
    """What a ``st_mode`` is, in words (``"a FIFO (named pipe)"``); ``"a regular file"`` for one."""
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    return next((kind for test, kind in _KINDS.items() if test(mode)), "not a regular file")


def output_file(path: str | os.PathLike[str]) -> Path:
    """``path`` checked against the output rule (see the module doc), before anything is written.

    Raises:
        UsageError: the path is empty or does not name a file.
        OutputError: something other than a regular file is there.
    """
    text = os.fspath(path)
    if not text:
        raise UsageError("the output path is empty: name the file to write")
    if os.path.basename(text) in ("", ".", ".."):  # on the text: pathlib drops a trailing "/" or "/."
        raise UsageError(f"output {text!r} does not name a file")
    target = Path(text)
    _check_replaceable(target)
    return target


def _check_replaceable(target: Path) -> None:
    try:
        mode = os.lstat(target).st_mode
    except FileNotFoundError:
        return
    except OSError as error:  # a path through a regular file (ENOTDIR), a loop, no permission
        raise OutputError(f"cannot write {target}: {error.strerror or error}") from error
    if stat.S_ISREG(mode):
        return
    if stat.S_ISLNK(mode):
        raise OutputError(
            f"output {target} is a symbolic link (to {os.readlink(target)}); mptc replaces its outputs and will "
            "not replace a link: remove it or name the file it points to"
        )
    raise OutputError(f"output {target} exists and is {file_kind(mode)}, not a regular file: mptc leaves it alone")


def _umask() -> int:
    """This process's umask, read without changing it where Linux tells it (``/proc/self/status``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere the only way to read it is to set it (and put it back at once)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    Raises:
        UsageError: ``path`` does not name a file.
        OutputError: ``path`` cannot be written, or something other than a regular file is there.
    """
    target = output_file(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            os.fchmod(fd, NEW_FILE_MODE & ~_umask())
        finally:
            os.close(fd)
    except OSError as error:
        raise OutputError(f"cannot write {target}: {error.strerror or error}") from error
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        _check_replaceable(target)  # again: something may have appeared there while we wrote
        os.replace(tmp, target)
    except OSError as error:
        raise OutputError(f"cannot write {target}: {error.strerror or error}") from error
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_regular_file(path: str | os.PathLike[str], max_bytes: int, what: str = "file") -> bytes:
    """The bytes of ``path``, refused (:class:`InputError`) unless it is a regular file of at most
    ``max_bytes``: checked on the open file, before reading, so a FIFO or a device never blocks."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as error:
        raise InputError(f"cannot read {what} {os.fspath(path)}: {error.strerror or error}") from error
    try:
        _check_readable(path, os.fstat(fd), what, max_bytes)
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(max_bytes + 1)
    except OSError as error:
        raise InputError(f"cannot read {what} {os.fspath(path)}: {error.strerror or error}") from error
    finally:
        os.close(fd)
    if len(data) > max_bytes:  # it grew while we read
        raise InputError(f"{what} {os.fspath(path)} is larger than {max_bytes:,} bytes")
    return data


def read_array(path: str | os.PathLike[str], name: str, role: str) -> tuple[str, np.ndarray]:
    """The one array of a ``.npz`` (or a ``.npy``), or the one called ``name`` (``role`` says what
    that name is); never unpickled.

    Raises:
        InputError: unreadable, not arrays, several arrays none of them ``name``, or an object array.
    """
    path = Path(path)
    try:
        loaded = np.load(path, allow_pickle=False)
    except OSError as error:
        raise InputError(f"cannot read {path}: {error.strerror or first_line(error)}") from error
    except Exception as error:  # noqa: BLE001 - a damaged zip raises BadZipFile, EOFError, zlib.error, ...
        raise InputError(f"{path} is not a .npz of arrays: {first_line(error)}") from error
    if isinstance(loaded, np.ndarray):
        return path.name, loaded
    with loaded:
        names = list(loaded.files)
        if len(names) != 1 and name not in names:
            listed = ", ".join(names[:8]) or "none"
            raise InputError(f"{path} holds {len(names)} arrays ({listed}): keep one, or name it '{name}' ({role})")
        chosen = names[0] if len(names) == 1 else name
        try:
            return chosen, loaded[chosen]
        except Exception as error:  # noqa: BLE001 - object arrays (pickles) and damaged members alike
            raise InputError(f"{path}: cannot read array '{chosen}': {first_line(error)}") from error


def _check_readable(path: str | os.PathLike[str], info: os.stat_result, what: str, max_bytes: int | None) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{what} {os.fspath(path)} is {file_kind(info.st_mode)}, not a regular file")
    if max_bytes is not None and info.st_size > max_bytes:
        raise InputError(f"{what} {os.fspath(path)} is {info.st_size:,} bytes, more than the {max_bytes:,} expected")


def output_folder(path: str | os.PathLike[str], replaceable: Collection[str]) -> Path:
    """``path`` checked as a folder output written as a whole (:func:`atomic_folder`), before any work.

    The folder may be absent, or a folder (not a link to one) holding only regular files named in
    ``replaceable`` (what an earlier run of the same command wrote there) and temporary files
    (``.*.tmp``) of an interrupted write. Anything else there is the user's and the write is
    refused, since the folder is replaced as a whole. The nearest existing parent must be a
    writable folder.

    Raises:
        UsageError: the path is empty or names no folder (``.``, ``..``).
        OutputError: something other than such a folder is there, or it cannot be created.
    """
    text = os.fspath(path)
    if not text:
        raise UsageError("the output path is empty: name the folder to write")
    target = Path(text)
    if target.name in ("", ".", ".."):
        raise UsageError(f"output {text!r} does not name a folder of its own (it is replaced as a whole): e.g. -o out")
    try:
        mode = os.lstat(target).st_mode
    except FileNotFoundError:
        _check_creatable(target)
        return target
    except OSError as error:
        raise OutputError(f"cannot write {target}: {error.strerror or error}") from error
    if stat.S_ISLNK(mode):
        raise OutputError(
            f"output {target} is a symbolic link (to {os.readlink(target)}); mptc replaces its output folder as a "
            "whole and will not replace a link: remove it or name the folder it points to"
        )
    if not stat.S_ISDIR(mode):
        raise OutputError(f"output {target} exists and is {file_kind(mode)}, not a folder: mptc leaves it alone")
    try:
        entries = list(os.scandir(target))
    except OSError as error:
        raise OutputError(f"cannot read output folder {target}: {error.strerror or error}") from error
    foreign = sorted(
        entry.name
        for entry in entries
        if not (
            entry.is_file(follow_symlinks=False)
            and (entry.name in replaceable or (entry.name.startswith(".") and entry.name.endswith(".tmp")))
        )
    )
    if foreign:
        shown = ", ".join(map(repr, foreign[:3])) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise OutputError(
            f"output folder {target} holds {shown}, which mptc did not write there; the folder is replaced as a "
            "whole: name a new or empty folder, or move them away"
        )
    _check_creatable(target)
    return target


def _check_creatable(target: Path) -> None:
    """Raise unless the nearest existing parent of ``target`` is a folder this process may write."""
    ancestor = target.parent
    while not os.path.lexists(ancestor) and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputError(f"cannot create {target}: {ancestor} is not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputError(f"cannot create {target}: {ancestor} is not writable")


@contextmanager
def atomic_folder(path: str | os.PathLike[str], replaceable: Collection[str]) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; on success it takes ``path``'s place as a whole.

    A reader of ``path`` sees the previous folder or the new one, never a mix of two runs: the
    files are written into ``.NAME.*.tmp``, then the old folder is renamed away, the new one
    renamed in, and the old one removed. A process killed between those two renames leaves no
    ``path`` (the previous folder is in ``.NAME.*.old.tmp`` beside it), not a mix. On failure the
    temporary folder is removed and ``path`` is left as it was. ``replaceable``: see
    :func:`output_folder`, which checks ``path`` before and again right before the swap.

    Raises:
        UsageError, OutputError: as :func:`output_folder`; OutputError too when the writing fails.
    """
    target = output_folder(path, replaceable)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    except OSError as error:
        raise OutputError(f"cannot write {target}: {error.strerror or error}") from error
    old: Path | None = None
    try:
        previous = os.stat(target).st_mode if target.is_dir() else None
        os.chmod(staging, stat.S_IMODE(previous) if previous is not None else 0o777 & ~_umask())
        yield staging
        _fsync_folder(staging)
        output_folder(target, replaceable)  # again: something may have appeared there while we worked
        if target.is_dir():
            old = target.parent / f"{staging.name[: -len('.tmp')]}.old.tmp"
            os.rename(target, old)
        os.rename(staging, target)
        _fsync_folder(target.parent)
    except OSError as error:
        if old is not None and not os.path.lexists(target):
            with suppress(OSError):
                os.rename(old, target)  # put the previous folder back
        raise OutputError(f"cannot write {target}: {error.strerror or error}") from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already once renamed into place
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)  # gone already if it was put back


def _fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (the renames into it) to disk, where the platform allows."""
    with suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
