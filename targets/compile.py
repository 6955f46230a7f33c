"""``compile_model``: a packed ONNX model -> ``OUT/`` with the compiled module, its manifest and a reference.

``OUT/`` is laid out as :mod:`mptc.artifact` defines (read back by ``mptc profile``):

* ``module.so`` - x86 native; aarch64 cross-linked by :mod:`mptc.targets.cross` (zig); for CUDA the
  host library with the CUDA module inside, and ``module.cu`` beside it;
* ``manifest.json`` - an :class:`mptc.artifact.Manifest`;
* ``reference.npz`` - a sample input ``x`` and the expected output ``y`` of the packed model, from
  onnxruntime when every ``ai.mptc`` node carries its ONNX function body, else from
  ``onnx.reference`` with ``mptc.ops.reference``;
* ``source.onnx`` - the model compiled, byte for byte.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import onnx
import tvm

from mptc import __version__
from mptc.artifact import (
    CUDA_SOURCE_FILE,
    MODULE_FILE,
    OUT_FILES,
    REFERENCE_FILE,
    SOURCE_MODEL_FILE,
    Activations,
    Manifest,
    Sizes,
    SourceModel,
    TargetInfo,
    TensorInfo,
    Versions,
    write_manifest,
    write_reference,
)
from mptc.conventions import for_onnxruntime, node_label
from mptc.errors import InputError, OutputError, UnsupportedError, first_line
from mptc.io import atomic_folder, atomic_path, output_folder, read_regular_file, write_bytes
from mptc.ops.reference import DOMAIN, REFERENCE_OPS
from mptc.passes.quantize_activations import quantize_activations
from mptc.targets.build import build
from mptc.targets.cross import aarch64_linker
from mptc.targets.frontend import Lowering, from_onnx
from mptc.targets.policy import KernelPolicy, default_policy
from mptc.targets.schedules import kernel_schedules
from mptc.targets.target import CompileTarget, resolve_target
from mptc.verify import require_finite

MAX_INPUT_ELEMENTS = 2**31 - 1  # TVM indexes tensors with int32 by default
MAX_MODEL_BYTES = 2**31 - 1  # protobuf's limit on one message
REFERENCE_SEED = 0  # the sample input is N(0, 1) from this seed: reproducible across runs
STAGES = ("import", "lower", "build", "reference", "write")  # in order, each named to on_stage as it starts


def compile_model(
    model: str | Path | onnx.ModelProto,
    target: str,
    out_dir: str | Path,
    board: str | None = None,
    target_json: str | Path | None = None,
    policy: KernelPolicy | None = None,
    on_stage: Callable[[str], None] | None = None,
    keep_model_as: str | None = None,
    input_shape: Sequence[int] | None = None,
    calibration: np.ndarray | None = None,
) -> dict[str, Any]:
    """Compile a packed ONNX model (``ai.mptc`` layers) for ``target`` and write ``out_dir``.

    Args:
        model: path to, or the proto of, an ONNX model whose ternary layers are already packed.
        target: ``"x86"`` (this host), ``"arm"`` or ``"cuda"``.
        out_dir: written as a whole (``mptc.io.atomic_folder``): absent, or holding only files mptc
            writes there (``mptc.artifact.OUT_FILES``) and the model compiled, which are replaced.
        board: ``rpi4`` / ``rpi5`` / ``jetson-orin`` (arm, cuda); picks the CPU or GPU of the board.
        target_json: a file holding a TVM target dict that replaces the built-in one.
        policy: the break-evens and block sizes that pick each layer's kernel; None: the measured
            default of the target's family (``targets.policy.default_policy``).
        on_stage: called with each name of :data:`STAGES` as that stage starts (a progress bar).
        keep_model_as: also write the model compiled into ``out_dir`` under this name (the CLI's
            ``packed.onnx``); a model read from ``out_dir`` itself is kept under its own name.
        input_shape: the shape to compile for, where the model's input has symbolic dimensions
            (a batch of 8: ``(8, 3, 224, 224)``); it must agree with every static one. None: a
            symbolic batch is 1, and any other symbolic dimension is refused.
        calibration: samples of the model's input (float32, a leading sample axis): quantize the
            input of every real-input ``ai.mptc`` layer to uint8 with ranges calibrated on them
            (``passes.quantize_activations``) and compile those layers as int8 kernels; the
            quantized model is the one compiled, kept and checked. None: fp32 activations.

    Returns:
        The manifest (also written to ``out_dir/manifest.json``).

    Raises:
        InputError: unreadable model or target JSON; UnsupportedError: unknown target/board, an op
        or layer the targets do not compile; OutputError: ``out_dir`` cannot be written.
    """
    stage = on_stage or (lambda _: None)
    stage("import")
    compile_target = resolve_target(target, board, target_json)
    out = Path(out_dir)
    keep_model_as, replaceable = check_out_dir(model, out, keep_model_as)  # refused before the work, not after
    proto, source, data = _load(model)
    if keep_model_as:
        source = dataclasses.replace(source, path=str(out / keep_model_as))
    _check_node_order(proto)
    input_name, input_shape = _graph_input(proto, input_shape)
    calibrated = None
    if calibration is not None:  # source.onnx is then the quantized model, the one compiled
        proto, data, calibrated = _quantized(proto, input_name, input_shape, calibration)
        source = dataclasses.replace(source, sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    stage("lower")
    kernels = kernel_schedules(compile_target)
    lowering = Lowering(kernels, policy if policy is not None else default_policy(compile_target.family))
    mod = from_onnx(proto, lowering, {input_name: input_shape})
    stage("build")
    executable = build(mod, compile_target, kernels.float_lanes)
    stage("reference")
    x, y, runtime = reference_io(proto, input_name, input_shape)  # before writing: it may refuse the model
    stage("write")
    with atomic_folder(out, replaceable) as staging:  # a reader sees the previous build or this one
        files = _export(executable, compile_target, staging)
        write_reference(staging, x, y)
        write_bytes(staging / SOURCE_MODEL_FILE, data)
        if keep_model_as:
            write_bytes(staging / keep_model_as, data)
        module = (staging / MODULE_FILE).read_bytes()
        manifest = Manifest(
            versions=Versions(mptc=__version__, tvm=tvm.__version__),
            target=TargetInfo(
                name=target, family=compile_target.family, board=compile_target.board, spec=compile_target.spec
            ),
            source_model=source,
            input=TensorInfo(name=input_name, shape=list(input_shape), dtype="float32"),
            output=TensorInfo(name=proto.graph.output[0].name, shape=list(y.shape), dtype=str(y.dtype)),
            files={**files, "reference": REFERENCE_FILE, "source_model": SOURCE_MODEL_FILE},
            reference_runtime=runtime,
            sparse_break_even=lowering.break_even
            if lowering.break_even is not None
            else lowering.policy.sparse_break_even,
            layers=[dataclasses.asdict(layer) for layer in lowering.layers],
            sizes=Sizes(
                module_bytes=len(module),
                source_model_bytes=source.bytes,
                packed_weight_bytes=sum(layer.packed_bytes for layer in lowering.layers),
                lowered_weight_bytes=sum(layer.lowered_bytes for layer in lowering.layers),
            ),
            module_sha256=hashlib.sha256(module).hexdigest(),
            activations=_activations(lowering, calibrated),
        )
        write_manifest(staging, manifest)
    return manifest.to_json()


def _quantized(
    model: onnx.ModelProto, input_name: str, input_shape: list[int], calibration: np.ndarray
) -> tuple[onnx.ModelProto, bytes, Activations]:
    """``model`` with its real-input layers' inputs quantized on ``calibration``, its bytes,
    and the manifest's record of it."""
    samples = np.asarray(calibration)
    if not (np.issubdtype(samples.dtype, np.floating) or np.issubdtype(samples.dtype, np.integer)):
        raise InputError(f"calibration data must be numbers (float32), got {samples.dtype}")
    if samples.ndim != len(input_shape) or list(samples.shape[1:]) != list(input_shape[1:]):
        raise InputError(
            f"calibration data of shape {list(samples.shape)} does not fit input {input_name!r} of shape {input_shape}"
            f" (expected samples x {input_shape[1:]})"
        )
    samples = np.ascontiguousarray(samples, np.float32)
    quantized = quantize_activations(model, input_name, samples)
    record = Activations("int8", len(samples), hashlib.sha256(samples.tobytes()).hexdigest())
    return quantized, quantized.SerializeToString(), record


def _activations(lowering: Lowering, calibrated: Activations | None) -> Activations:
    """What the manifest says of the activations: the calibration this compile quantized with, or
    int8 where a layer of a model quantized before runs an int8 kernel (it reads the model's own
    scales), else fp32. Each layer's ``input_mode`` says whether its kernel is an int8 one."""
    if calibrated is not None:
        return calibrated
    return Activations("int8") if any(layer.input_mode == "int8" for layer in lowering.layers) else Activations()


def check_out_dir(
    model: str | Path | onnx.ModelProto, out_dir: str | Path, keep_model_as: str | None = None
) -> tuple[str | None, frozenset[str]]:
    """Refuse ``out_dir`` as :func:`compile_model` would, before any work (``mptc.io.output_folder``).

    Returns:
        The name the model is kept under in ``out_dir`` (``keep_model_as``, or the model's own name
        when it is read from ``out_dir``, since the new folder replaces the old one as a whole), and
        the file names ``out_dir`` may hold.
    """
    if keep_model_as is None and not isinstance(model, onnx.ModelProto) and _same_folder(Path(model).parent, out_dir):
        keep_model_as = Path(model).name
    replaceable = OUT_FILES | ({keep_model_as} if keep_model_as else set())
    output_folder(out_dir, replaceable)
    return keep_model_as, replaceable


def reference_io(model: onnx.ModelProto, input_name: str, shape: list[int]) -> tuple[np.ndarray, np.ndarray, str]:
    """A seeded sample input and the packed model's output on it, and which runtime produced it."""
    x = np.random.default_rng(REFERENCE_SEED).standard_normal(shape).astype(np.float32)
    run, runtime = reference_runner(model, input_name)
    y = run(x)
    # A module cannot be checked against NaN: a model that gives it on a plain sample is refused.
    require_finite(y, f"the model's outputs on a N(0, 1) sample, in {runtime},")
    return x, y, runtime


def reference_runner(model: onnx.ModelProto, input_name: str) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    """The packed model as a function of its input, and the runtime behind it: onnxruntime when
    every ``ai.mptc`` node carries its ONNX function body, else ``onnx.reference``."""
    with_bodies = {f.name for f in model.functions if f.domain == DOMAIN}
    used = {n.op_type for n in model.graph.node if n.domain == DOMAIN}
    if used <= with_bodies:
        import onnxruntime as ort
        from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

        runnable = for_onnxruntime(model)
        try:
            session = ort.InferenceSession(runnable.SerializeToString(), providers=["CPUExecutionProvider"])
        except (
            ort_errors.Fail,
            ort_errors.InvalidGraph,
            ort_errors.InvalidArgument,
            ort_errors.InvalidProtobuf,
        ) as error:
            raise InputError(
                f"onnxruntime cannot load the model to compute its reference output: {first_line(error)}"
            ) from error
        return lambda x: session.run(None, {input_name: x})[0], f"onnxruntime {ort.__version__}"
    from onnx.reference import ReferenceEvaluator

    evaluator = ReferenceEvaluator(model, new_ops=REFERENCE_OPS)
    return (
        lambda x: cast("list[np.ndarray]", evaluator.run(None, {input_name: x}))[0],
        f"onnx.reference {onnx.__version__}",
    )


def _load(model: str | Path | onnx.ModelProto) -> tuple[onnx.ModelProto, SourceModel, bytes]:
    if isinstance(model, onnx.ModelProto):
        data = model.SerializeToString()
        path = None
    else:
        path = Path(model)
        data = read_regular_file(path, MAX_MODEL_BYTES, "model")  # a FIFO would block the compile
    try:
        proto = onnx.load_from_string(data)
    except Exception as error:  # protobuf raises DecodeError and friends, not one base class
        raise InputError(f"{path or 'model'} is not an ONNX model: {error}") from error
    source = SourceModel(path=str(path) if path else None, sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    return proto, source, data


def _graph_input(model: onnx.ModelProto, given: Sequence[int] | None = None) -> tuple[str, list[int]]:
    """The single non-initializer graph input, float32, and the static shape to compile it for:
    ``given`` where the model's dimensions are symbolic (without it, a symbolic batch becomes 1)."""
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise UnsupportedError(f"expected one graph input, got {[i.name for i in inputs]}")
    name, tensor = inputs[0].name, inputs[0].type.tensor_type
    if tensor.elem_type != onnx.TensorProto.FLOAT:
        raise UnsupportedError(
            f"input {name!r} must be float32, got {onnx.TensorProto.DataType.Name(tensor.elem_type)}"
        )
    declared = [dim.dim_value if dim.HasField("dim_value") else dim.dim_param or "?" for dim in tensor.shape.dim]
    if given is not None:
        shape = [int(d) for d in given]
        agrees = len(shape) == len(declared) and all(isinstance(d, str) or d == s for d, s in zip(declared, shape))
        if not agrees or min(shape, default=1) < 1:
            raise InputError(f"--input-shape {shape} does not fit input {name!r} of shape {declared}")
    else:
        shape = []
        for axis, dim in enumerate(declared):
            if isinstance(dim, str) and axis > 0:
                raise UnsupportedError(
                    f"input {name!r} axis {axis} is symbolic ({dim!r}): give the shape to compile for "
                    "(--input-shape, e.g. 1,3,224,224)"
                )
            shape.append(1 if isinstance(dim, str) else dim)
    elements = int(np.prod(shape, dtype=np.int64))
    if not 0 < elements <= MAX_INPUT_ELEMENTS:
        raise InputError(f"input {name!r} of shape {shape} has {elements} elements: expected 1 to {MAX_INPUT_ELEMENTS}")
    return name, shape


def _check_node_order(model: onnx.ModelProto) -> None:
    """Every node reads only graph inputs, initializers and earlier nodes' outputs (ONNX requires
    topological order; a cycle breaks it too), so the importer never meets an unknown name."""
    known = {i.name for i in model.graph.input} | {t.name for t in model.graph.initializer} | {""}
    for node in model.graph.node:
        missing = [name for name in node.input if name not in known]
        if missing:
            raise InputError(
                f"node {node_label(node.name, node.op_type, node.output)} reads {missing[0]!r} before any node produces it: the graph is cyclic or not topologically sorted"
            )
        known.update(node.output)


def _same_folder(a: Path, b: str | Path) -> bool:
    try:
        return os.path.isdir(a) and os.path.isdir(b) and os.path.samefile(a, b)
    except OSError:
        return False


def _export(executable, target: CompileTarget, out: Path) -> dict[str, str]:
    """Write ``module.so`` (and ``module.cu`` for CUDA); returns the files written by role."""
    files = {"module": MODULE_FILE}
    if target.family == "cuda":
        (out / CUDA_SOURCE_FILE).write_text(cuda_source(executable))
        files["cuda_source"] = CUDA_SOURCE_FILE
    host_triple = str((target.spec.get("host") or target.spec).get("mtriple", ""))
    fcompile = aarch64_linker().fcompile() if host_triple.startswith("aarch64") else None
    # Linked beside and renamed into place: a link cut short (a full disk) leaves no truncated module.so.
    with atomic_path(out / MODULE_FILE) as tmp:
        try:
            executable.export_library(str(tmp), fcompile=fcompile)
        except RuntimeError as error:  # the linker's own failure; a full disk is the user's, not a bug
            if "No space left on device" not in str(error):
                raise
            raise OutputError(f"cannot write {out / MODULE_FILE}: No space left on device") from error
    return files


def cuda_source(executable) -> str:
    """The generated CUDA source of a CUDA build (the device code compiles at load time)."""
    sources, pending = [], list(executable.mod.imports)
    while pending:  # the CUDA module hangs under the host (llvm) module
        module = pending.pop()
        pending.extend(module.imports)
        if module.kind == "cuda":
            sources.append(module.inspect_source("cuda"))
    if not sources:
        raise UnsupportedError("the CUDA build produced no CUDA module")
    return "\n".join(sources)
