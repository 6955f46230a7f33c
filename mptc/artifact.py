"""The folder `mptc compile` writes and `mptc profile` reads: its file names and its manifest.

OUT/ holds:

* ``module.so`` - the Relax VM executable as a shared library (for CUDA the host library with the
  CUDA module inside);
* ``module.cu`` - CUDA only: the generated CUDA source;
* ``manifest.json`` - a :class:`Manifest`: target, input/output signature, per-layer kernel choice
  and why, sizes, sha256 of the source model, mptc and TVM versions, and how TVM's thread pool is
  set where mptc runs the module (:class:`ThreadPool`);
* ``reference.npz`` - ``x`` a sample input and ``y`` the packed model's expected output on it;
* ``source.onnx`` - the ONNX model compiled, byte for byte (the manifest holds its sha256): what
  ``mptc profile --compare`` runs in onnxruntime, and what it checks the module against on the
  user's inputs. A folder compiled before mptc kept it lacks it; nothing else needs it.
* ``packed.onnx`` - written by ``mptc compile`` when it packed the model first;
* ``profile.json`` - written by ``mptc profile``.

The folder is written as a whole (:func:`mptc.io.atomic_folder`): a reader sees the previous
build or the new one, never a mix. The manifest holds the sha256 of ``module.so``, which
``mptc profile`` checks before loading it (a folder compiled before mptc recorded it lacks it,
and is refused: compile again).

The compiler (``mptc.targets``) writes the folder and the deployer (``mptc.deploy``) reads it, so
both import the layout from here. A manifest is read back into the same dataclasses it was written
from, checking every field's JSON type: a damaged or foreign manifest is an :class:`InputError`
naming the field, never a ``KeyError`` deep inside a reader. ``format`` numbers the schema; a
change to a field's name or meaning raises it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mptc.errors import InputError, first_line
from mptc.io import read_regular_file, write_bytes, write_text

MODULE_FILE = "module.so"
CUDA_SOURCE_FILE = "module.cu"
MANIFEST_FILE = "manifest.json"
REFERENCE_FILE = "reference.npz"
SOURCE_MODEL_FILE = "source.onnx"
REQUIRED_FILES = (MODULE_FILE, MANIFEST_FILE, REFERENCE_FILE)
PACKED_MODEL_FILE = "packed.onnx"
PROFILE_FILE = "profile.json"
OUT_FILES = frozenset(
    {MODULE_FILE, CUDA_SOURCE_FILE, MANIFEST_FILE, REFERENCE_FILE, SOURCE_MODEL_FILE, PACKED_MODEL_FILE, PROFILE_FILE}
)
"""Every file mptc writes in OUT/: a folder holding nothing else is a build a new compile may replace."""
MANIFEST_FORMAT = 1
MAX_MANIFEST_BYTES = 64 * 2**20  # bounds on what is read whole: a damaged or hostile folder may hold anything
MAX_FILE_BYTES = 2**31  # module.so, source.onnx, reference.npz (ONNX's own limit is 2 GiB)


@dataclass(frozen=True)
class Versions:
    mptc: str
    tvm: str


@dataclass(frozen=True)
class TargetInfo:
    """What the module was built for: the ``--target`` name, its family, the board (if one was
    named) and the TVM target dict itself (``spec``)."""

    name: str
    family: str
    board: str | None
    spec: dict[str, Any]


@dataclass(frozen=True)
class SourceModel:
    """The ONNX model compiled: its path (``None`` when handed over in memory), sha256 and size
    (``source.onnx``; with int8 activations the model quantized from the file at ``path``)."""

    path: str | None
    sha256: str
    bytes: int


@dataclass(frozen=True)
class TensorInfo:
    """A graph input or output: the module takes and returns exactly this static shape and dtype."""

    name: str
    shape: list[int]
    dtype: str


@dataclass(frozen=True)
class Sizes:
    module_bytes: int
    source_model_bytes: int
    packed_weight_bytes: int  # sign + mask bits as stored in the ONNX model
    lowered_weight_bytes: int  # the constants the chosen kernels read


@dataclass(frozen=True)
class Activations:
    """The number format of the activations the real-input layers read: ``fp32``, or ``int8``
    (``mptc compile --activations int8``: uint8 per tensor, ranges calibrated on ``samples`` rows
    of data whose float32 bytes hash to ``sha256``)."""

    dtype: str = "fp32"
    samples: int = 0
    sha256: str | None = None


@dataclass(frozen=True)
class ThreadPool:
    """How TVM's CPU thread pool is set wherever mptc runs the module: the runtime reads these from
    its environment (``TVM_NUM_THREADS``, ``TVM_THREAD_POOL_SPIN_COUNT``, ``TVM_BIND_THREADS``) once,
    when a process first runs a parallel kernel.

    TVM's own defaults suit a machine doing nothing else: after every parallel kernel each worker
    busy-waits 300,000 ``sched_yield`` calls before it sleeps, which keeps a core busy for
    milliseconds after each inference, and each worker is pinned to one core, where a busy neighbour
    process then stalls the whole kernel (its tasks are split evenly). mptc's defaults: spin long
    enough to bridge the gaps between the kernels of one call, not the idle time between calls, and
    let the OS place the threads."""

    threads: int | None = None  # None: every core the process may use (``import mptc`` sets TVM_NUM_THREADS so)
    spin_count: int = 1000  # sched_yield calls a worker spins before it sleeps (TVM's default: 300,000)
    bind_threads: bool = False  # pin each worker to a core (TVM's default: True)

    def environment(self) -> dict[str, str]:
        """The environment variables TVM's runtime reads these from."""
        env = {"TVM_THREAD_POOL_SPIN_COUNT": str(self.spin_count), "TVM_BIND_THREADS": str(int(self.bind_threads))}
        return env if self.threads is None else {"TVM_NUM_THREADS": str(self.threads), **env}


@dataclass(frozen=True)
class Manifest:
    """``manifest.json``. ``layers`` holds the compiler's record of each ``ai.mptc`` layer
    (``mptc.targets.frontend.LayerRecord`` as a dict: name, op_type, kernel, reason, ...)."""

    format: int = field(default=MANIFEST_FORMAT, kw_only=True)  # first in the file: read before the rest
    versions: Versions
    target: TargetInfo
    source_model: SourceModel
    input: TensorInfo
    output: TensorInfo
    files: dict[str, str]  # role (module, cuda_source, reference, source_model) -> file name in OUT/
    reference_runtime: str
    sparse_break_even: float | dict[str, float]
    layers: list[dict[str, Any]]
    sizes: Sizes
    module_sha256: str | None = None  # of module.so; None (absent) in folders compiled before it was recorded
    # absent in folders compiled before it was recorded: read as the defaults, which mptc runs those with
    thread_pool: ThreadPool = field(default_factory=ThreadPool)
    activations: Activations = field(default_factory=Activations)  # absent before int8: fp32

    def to_json(self) -> dict[str, Any]:
        """The JSON object, keys in field order (``format`` first)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Any, where: str) -> Manifest:
        """Check ``data`` (parsed JSON) field by field; ``where`` names it in an error."""
        if isinstance(data, dict) and isinstance(data.get("format"), int) and data["format"] != MANIFEST_FORMAT:
            raise InputError(
                f"{where} has manifest format {data['format']}, this mptc reads format {MANIFEST_FORMAT}: compile again"
            )
        return _typed(data, cls, where)


def write_manifest(out_dir: str | Path, manifest: Manifest) -> None:
    """Write ``OUT/manifest.json`` atomically: a reader never sees half of a manifest."""
    write_text(Path(out_dir) / MANIFEST_FILE, json.dumps(manifest.to_json(), indent=2) + "\n")


def read_manifest(out_dir: str | Path) -> Manifest:
    """``OUT/manifest.json``, type-checked.

    Raises:
        InputError: unreadable, not JSON, of another format, or a field missing or of the wrong type.
    """
    path = Path(out_dir) / MANIFEST_FILE
    try:
        data = json.loads(read_regular_file(path, MAX_MANIFEST_BYTES, "manifest"))
    except (ValueError, RecursionError) as error:
        raise InputError(f"cannot read {path}: {first_line(error)}") from error
    return Manifest.from_json(data, str(path))


def write_reference(out_dir: str | Path, x: np.ndarray, y: np.ndarray) -> None:
    """Write ``OUT/reference.npz`` (``x`` a sample input, ``y`` the expected output) atomically."""
    buffer = io.BytesIO()
    np.savez(buffer, x=x, y=y)
    write_bytes(Path(out_dir) / REFERENCE_FILE, buffer.getvalue())


def read_reference(out_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``x`` and ``y`` of ``OUT/reference.npz``; a damaged file or a missing array is an InputError."""
    path = Path(out_dir) / REFERENCE_FILE
    data = read_regular_file(path, MAX_FILE_BYTES, "reference")  # bounded before numpy sizes any array
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            return arrays["x"], arrays["y"]
    except KeyError as error:
        raise InputError(f"{path} must hold arrays 'x' (sample input) and 'y' (expected output)") from error
    except Exception as error:  # noqa: BLE001 - a damaged zip raises BadZipFile, EOFError, zlib.error, OSError, ...
        raise InputError(f"cannot read {path}: {first_line(error)}") from error


def read_source_model(out_dir: str | Path, manifest: Manifest) -> bytes:
    """``OUT/source.onnx``, refused unless its sha256 is the manifest's: the model the module was compiled from."""
    path = Path(out_dir) / SOURCE_MODEL_FILE
    if not path.exists():
        raise InputError(
            f"{path} is missing: the folder was compiled by an mptc that kept no copy of the model; compile again"
        )
    data = read_regular_file(path, MAX_FILE_BYTES, "source model")
    digest = hashlib.sha256(data).hexdigest()
    if digest != manifest.source_model.sha256:
        raise InputError(
            f"{path} is not the model the module was compiled from (sha256 {digest[:12]}..., the manifest "
            f"says {manifest.source_model.sha256[:12]}...): compile again"
        )
    return data


_JSON_NAMES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def _typed(value: Any, hint: Any, where: str, key: str = "") -> Any:
    """``value`` checked against the type ``hint``, a dataclass built from an object; ``key`` is
    the path to ``value`` inside the file ``where`` (``input.shape[0]``)."""
    what = f"{where}: '{key}'" if key else where
    if dataclasses.is_dataclass(hint):
        data = _typed(value, dict[str, Any], where, key)
        # a field whose default is None, or made by a factory, may be absent: the file was written
        # before the field existed, and the reader gets the default
        missing = [
            f.name
            for f in dataclasses.fields(hint)
            if f.name not in data and f.default is not None and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise InputError(f"{what} has no '{missing[0]}'")
        hints = typing.get_type_hints(hint)
        return typing.cast(type, hint)(
            **{
                f.name: _typed(data[f.name], hints[f.name], where, f"{key}.{f.name}".lstrip("."))
                for f in dataclasses.fields(hint)
                if f.name in data
            }
        )
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        for option in args:
            try:
                return _typed(value, option, where, key)
            except InputError:
                continue
        raise InputError(
            f"{what} must be {' or '.join(_JSON_NAMES[typing.get_origin(a) or a] for a in args)}, got {_json_name(value)}"
        )
    if hint is Any:
        return value
    expected = origin or hint
    # JSON has one number type: an integer is a float too; a boolean is neither
    accepted = (int, float) if expected is float else expected
    if not isinstance(value, accepted) or (isinstance(value, bool) and expected is not bool):
        raise InputError(f"{what} must be {_JSON_NAMES[expected]}, got {_json_name(value)}")
    if origin is list and isinstance(value, list):
        return [_typed(item, args[0], where, f"{key}[{i}]") for i, item in enumerate(value)]
    if origin is dict and isinstance(value, dict):
        return {name: _typed(item, args[1], where, f"{key}.{name}") for name, item in value.items()}
    return value


def _json_name(value: Any) -> str:
    return next((name for kind, name in _JSON_NAMES.items() if type(value) is kind), type(value).__name__)
