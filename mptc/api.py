"""The Python API: each stage of ``mptc`` as one function returning what it made, printing nothing.

Each function calls the library code its CLI command calls (``mptc train`` -> :func:`train`, ...),
and raises the same typed errors (:mod:`mptc.errors`). Re-exported lazily from :mod:`mptc`, so
``import mptc`` loads neither torch nor TVM until one of them is used::

    import mptc

    run = mptc.train("my_pkg.nets:Net", method="biprop", sparsity=0.5, out="runs/net")
    onnx = mptc.export(run.run_dir)
    packed = mptc.optimize(onnx.path)
    manifest = mptc.compile(packed.path, target="x86", out="runs/net/x86")
    report = mptc.profile("runs/net/x86")

:func:`prune` converts a model in place for a training loop of one's own. See ``docs/python-api.md``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from mptc.artifact import PACKED_MODEL_FILE
from mptc.config import METHODS, PRETRAINED_METHODS, TrainConfig
from mptc.errors import InputError, first_line

if TYPE_CHECKING:
    import numpy as np
    from torch import nn

    from mptc.artifact import Manifest
    from mptc.export.onnx_export import ExportReport
    from mptc.models.convert import Conversion, LayerPredicate
    from mptc.targets.policy import KernelPolicy
    from mptc.train.loop import EpochCallback, TrainResult

PathLike = str | os.PathLike[str]
EXPORT_FILE = "model.onnx"


class CallablePackage(ModuleType):
    """A package that is also the API function of its name: ``mptc.train``, ``mptc.export``.

    Python binds ``mptc.train`` to the package ``mptc/train`` as soon as any of its modules is
    imported, so a function ``mptc.train`` could not stay one; instead calling the package
    calls the function of this module with its name.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return globals()[self.__name__.rpartition(".")[2]](*args, **kwargs)


def prune(
    model: nn.Module,
    method: str = "biprop",
    sparsity: float = 0.5,
    *,
    binary_act: bool | Sequence[str] | LayerPredicate = False,
    binarize: bool = False,
    per_channel_alpha: bool = False,
    dense_first: bool = False,
    dense_last: bool = False,
    learn_bn: bool = False,
    keep_weights: bool | None = None,
    init: str | None = None,
    seed: int = 0,
) -> Conversion:
    """Make ``model`` a strong-lottery-ticket model in place: every ``Conv2d``/``Linear`` masked.

    The conversion is :func:`mptc.models.convert.convert` (which layers, in which order, what is
    left alone and why); afterwards only the scores train (and the layers kept dense, and
    normalisation affines with ``learn_bn``), so any training loop learns the mask.

    Args:
        model: any module with ``Conv2d``/``Linear`` layers (grouped and depthwise included).
        method: ``edge-popup``, ``biprop`` (MPT-1/32), ``jackpot``/``magnitude`` (search in the
            model's own pre-trained weights, starting from the magnitude mask with one global
            threshold) or ``dense`` (nothing converted).
        sparsity: fraction of weights PRUNED, per layer (jackpot/magnitude: over all masked layers).
        binary_act: MPT-1/1 binary activations in front of masked layers: ``True`` for every
            masked layer but the first layer, glob patterns over layer names (``["layer*.conv2"]``),
            or a predicate ``(name, layer) -> bool``.
        binarize: ternary ``alpha * sign(W) * M`` weights for methods other than biprop.
        per_channel_alpha: one alpha per output channel (ternary weights).
        dense_first, dense_last: keep the first/last converted layer an ordinary trainable layer.
        learn_bn: train normalisation layers' affine parameters too.
        keep_weights: mask the model's own weights (default for jackpot/magnitude, which need
            them). Default for edge-popup/biprop is False: as the papers and ``mptc train`` do,
            every ``Conv2d``/``Linear`` weight is drawn again from ``seed`` with ``init`` (and its
            bias zeroed), so a ticket is seed + mask bits. True keeps pre-trained weights frozen
            under the mask instead.
        init: random weights (``kaiming-normal``, ``scaled-kaiming``, ``signed-constant``;
            default: signed-constant for edge-popup, else kaiming-normal).
        seed: seed of the random weights and the scores.

    Returns:
        The :class:`~mptc.models.convert.Conversion`: masked, dense and left-alone layers.

    Raises:
        InputError: an unknown method or option, ``keep_weights=False`` for a jackpot, a pattern
            that matches no layer. UnsupportedError: see :func:`mptc.models.convert.convert`.
    """
    from mptc.models.convert import convert
    from mptc.models.factory import LayerRecipe
    from mptc.nn.init import initialize, initialize_scores

    searched = method in PRETRAINED_METHODS
    if keep_weights is False and searched:
        raise InputError(f"method {method} searches inside the model's own weights: keep_weights cannot be False")
    try:
        recipe = LayerRecipe(
            method=method,
            sparsity=sparsity if method != "dense" else 0.0,
            binarize=binarize,
            binary_act=bool(binary_act),
            dense_first=dense_first,
            dense_last=dense_last,
            per_channel_alpha=per_channel_alpha,
            learn_bn=learn_bn,
        )
        init = init or _default_init(method)
    except ValueError as error:
        raise InputError(first_line(error)) from error
    where: Sequence[str] | LayerPredicate = ()
    if isinstance(binary_act, str):
        where = (binary_act,)
    elif not isinstance(binary_act, bool):
        where = binary_act
    conversion = convert(model, recipe, where)
    if searched:
        from mptc.jackpot.search import start_from_magnitude

        start_from_magnitude(model, sparsity, learn_bn)
    elif keep_weights:
        initialize_scores(model, seed)
    elif method != "dense":
        initialize(model, seed, init)
    return conversion


def _default_init(method: str) -> str:
    """The recipe's init for ``method`` (:func:`mptc.train.config.resolve`)."""
    from mptc.train.config import resolve

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    if method in PRETRAINED_METHODS:
        return "kaiming-normal"  # unused: the model's own weights stay
    init = resolve(TrainConfig(method=method)).init
    assert init is not None
    return init


def train(
    model: str | Callable[..., nn.Module] | TrainConfig = "mlp",
    *,
    out: PathLike,
    resume: bool = False,
    on_epoch: EpochCallback | None = None,
    binary_act: bool | Sequence[str] | None = None,
    **options: Any,
) -> TrainResult:
    """Train a ticket into the run folder ``out``, as ``mptc train`` does; returns its result.

    Args:
        model: a zoo model (``"resnet18"``), a user's model as an import path
            (``"my_pkg.nets:Net"``) or as the class/function itself (recorded as its import path;
            it must be importable by that path in the processes that load the ticket), or a
            complete :class:`~mptc.config.TrainConfig` (then no ``options``).
        out: the run folder (created; with ``resume``, continued).
        on_epoch: called with each epoch's record (loss, accuracies, lr, seconds).
        binary_act: binary activations: ``True`` (a user's model: in front of every masked layer
            but the first layer), or glob patterns of the layers of a user's model to put them
            in front of.
        **options: any other :class:`~mptc.config.TrainConfig` field: ``method``, ``sparsity``,
            ``dataset``, ``epochs``, ``model_args`` (dict), ``pretrained`` (path),
            ``input_shape`` (tuple), ``seed``, ``lr``, ``warmup_epochs``, ...

    Returns:
        The :class:`~mptc.train.loop.TrainResult`: resolved config, run folder, metrics, the
        trained model (eval mode, CPU).

    Raises:
        InputError: an unknown option or an invalid combination (the message says which);
            the training run's own errors otherwise.
    """
    import mptc.jackpot  # noqa: F401  (registers the jackpot methods' training hooks)
    from mptc.train.loop import train as run_training

    config = _train_config(model, binary_act, options)
    return run_training(config, Path(out), resume=resume, on_epoch=on_epoch)


def _train_config(
    model: str | Callable[..., nn.Module] | TrainConfig,
    binary_act: bool | Sequence[str] | None,
    options: dict[str, Any],
) -> TrainConfig:
    if isinstance(model, TrainConfig):
        if options or binary_act is not None:
            raise InputError(f"a complete TrainConfig takes no further options, got {sorted(options)}")
        return model
    if callable(model):
        from mptc.models.user import import_path_of

        model = import_path_of(model)
    fields = {field.name for field in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise InputError(
            f"unknown training option(s) {', '.join(unknown)}; TrainConfig has {', '.join(sorted(fields))}"
        )
    if isinstance(binary_act, str) or callable(binary_act):
        raise InputError("binary_act takes True or a list of glob patterns (a ticket records where the signs go)")
    if binary_act is not None and not isinstance(binary_act, bool):
        options = {**options, "binary_act": True, "binary_act_before": tuple(binary_act)}
    elif binary_act is not None:
        options = {**options, "binary_act": binary_act}
    if options.get("input_shape") is not None:
        options["input_shape"] = tuple(options["input_shape"])
    if options.get("pretrained") is not None:
        options["pretrained"] = str(options["pretrained"])
    try:
        return TrainConfig(model=model, **options)
    except (TypeError, ValueError) as error:
        raise InputError(first_line(error)) from error


def load_ticket(ticket: PathLike, pretrained: PathLike | None = None) -> tuple[nn.Module, TrainConfig]:
    """The model a ticket (a run folder or its ``ticket.safetensors``) holds, in eval mode, and its config.

    ``pretrained``: where the pre-trained weights a ticket of a user's model was trained over
    are now (default: the path recorded in it); their hash must match.
    """
    from mptc.ticket import load_ticket as load
    from mptc.train.rundir import RunDir

    path = Path(ticket)
    return load(RunDir(path).ticket if path.is_dir() else path, pretrained=Path(pretrained) if pretrained else None)


def export(
    run_dir: PathLike,
    output: PathLike | None = None,
    *,
    fmt: str = "onnx",
    opset: int = 18,
    pretrained: PathLike | None = None,
) -> ExportReport:
    """Export a run's ticket to ONNX (``mptc export``), checked against PyTorch in onnxruntime.

    Args:
        output: the ONNX file (default: ``RUN/model.onnx``).
        fmt: ``onnx`` or ``qonnx``.
        pretrained: for a ticket over a user's pre-trained weights, where they are now.

    Returns:
        The :class:`~mptc.export.onnx_export.ExportReport` (path, parity, accuracies).
    """
    from mptc.export import export_run

    output = Path(output) if output is not None else Path(run_dir) / EXPORT_FILE
    if pretrained is None:
        return export_run(Path(run_dir), output, fmt=fmt, opset=opset)
    from mptc.data import load_dataset
    from mptc.export import export_model

    model, config = load_ticket(run_dir, pretrained)
    return export_model(model, config, load_dataset(config.dataset), output, fmt=fmt, opset=opset)


@dataclass(frozen=True)
class OptimizeResult:
    """A packed ONNX model: where it is, its packed layers and its parameter bytes."""

    path: Path
    packed_layers: tuple[str, ...]
    parameter_bytes: int


def optimize(model: PathLike, output: PathLike | None = None) -> OptimizeResult:
    """Pack an exported ONNX model's ternary layers into ``ai.mptc`` operators (``mptc optimize``).

    Args:
        output: the packed model (default: ``packed.onnx`` beside ``model``).

    Raises:
        UnsupportedError: no layer could be packed (e.g. a dense or jackpot model without
            ``binarize``); the reasons per layer are in the message.
    """
    from mptc.passes.inspect import inspect_model
    from mptc.passes.pipeline import optimize_file

    output = Path(output) if output is not None else Path(model).with_name(PACKED_MODEL_FILE)
    packed = optimize_file(model, output)
    rows = inspect_model(packed)
    return OptimizeResult(
        output, tuple(row.name for row in rows if row.op.startswith("Binary")), sum(row.bytes for row in rows)
    )


def compile(
    model: PathLike,
    *,
    target: str = "x86",
    out: PathLike | None = None,
    board: str | None = None,
    target_json: PathLike | None = None,
    policy: KernelPolicy | None = None,
    on_stage: Callable[[str], None] | None = None,
    on_pack: Callable[[list[str], Path], None] | None = None,
    input_shape: Sequence[int] | None = None,
    calibration: np.ndarray | None = None,
) -> Manifest:
    """Compile an ONNX model with TVM into the folder ``out`` (``mptc compile``).

    A model whose ternary layers are not packed yet is packed first and kept as
    ``OUT/packed.onnx`` (the model the manifest then describes); a model with none (dense, a
    real-valued jackpot) compiles as it is. ``OUT/`` is written as a whole: a failed compile
    leaves an earlier folder as it was.

    Args:
        target: ``x86`` (this host), ``arm`` or ``cuda``; ``board`` picks a board's CPU or GPU.
        out: the output folder (default: a folder named after ``target`` beside ``model``).
        policy: kernel thresholds to use instead of the target family's measured defaults.
        on_stage: told each compile stage as it starts (``mptc.targets.compile.STAGES``).
        on_pack: told the names of the layers about to be packed and where they will be kept.
        input_shape: the input shape to compile for where the model's is symbolic (e.g. a batch of
            8); None: a symbolic batch is 1.
        calibration: samples of the model's input (``mptc compile --activations int8``): the
            real-input (MPT-1/32) layers then read uint8 activations, quantized with ranges calibrated
            on them; ``OUT/source.onnx`` is the quantized model. None: fp32 activations.

    Returns:
        The :class:`~mptc.artifact.Manifest` written to ``OUT/manifest.json``.
    """
    import tempfile

    from mptc.artifact import read_manifest
    from mptc.io import write_bytes
    from mptc.ops.reference import DOMAIN
    from mptc.passes.inspect import inspect_model
    from mptc.passes.pipeline import load_model, optimize
    from mptc.targets.compile import check_out_dir, compile_model
    from mptc.targets.target import resolve_target

    model = Path(model)
    out = Path(out) if out is not None else model.parent / target
    resolve_target(target, board, target_json)  # a bad target fails before any packing
    check_out_dir(model, out)  # and so does an output folder it may not replace
    source = load_model(model)
    already_packed = any(node.domain == DOMAIN for node in source.graph.node)
    # layers no packed kernel compiles (grouped convs) stay as they are: then nothing may pack;
    # weights behind quantizers (QONNX, QCDQ) are only found by the passes themselves
    packed = source if already_packed else optimize(source, require_packed=False)
    unpacked = packed is not source
    with tempfile.TemporaryDirectory(prefix="mptc-compile-") as scratch:  # OUT/ is written whole or not at all
        if unpacked:
            if on_pack is not None:
                on_pack(
                    [row.name for row in inspect_model(packed) if row.op.startswith("Binary")], out / PACKED_MODEL_FILE
                )
            write_bytes(Path(scratch) / PACKED_MODEL_FILE, packed.SerializeToString())
        compile_model(
            Path(scratch) / PACKED_MODEL_FILE if unpacked else model,
            target,
            out,
            board=board,
            target_json=target_json,
            policy=policy,
            on_stage=on_stage,
            keep_model_as=PACKED_MODEL_FILE if unpacked else None,
            input_shape=input_shape,
            calibration=calibration,
        )
    return read_manifest(out)


def profile(
    out: PathLike,
    *,
    rpc: str | None = None,
    tracker: str | None = None,
    key: str | None = None,
    emulate: str | None = None,
    repeat: int = 10,
    number: int = 1,
    compare: Sequence[str] = (),
    rounds: int | None = None,
    inputs: PathLike | None = None,
    save_outputs: PathLike | None = None,
    top_k: int | None = None,
    per_layer: bool = False,
    instructions: bool = False,
) -> dict[str, Any]:
    """Run ``OUT/module.so`` on a device, check it against the reference and time it (``mptc profile``).

    Without ``rpc``/``tracker``/``emulate`` it runs here (a module built for this host).
    ``compare`` names peers (``onnxruntime``, ``onnxruntime-int8``) timed beside the module on the
    source model, in ``rounds`` interleaved rounds (default: the CLI's); ``inputs`` is a ``.npz``
    of samples to run and check instead of the reference input; ``save_outputs`` writes the
    module's outputs to a ``.npz``; ``top_k`` adds each sample's highest scores to the report;
    ``per_layer`` (here only) times each kernel beside onnxruntime's profiler; ``instructions``
    (with ``emulate``) counts guest instructions per inference on the emulated core, and
    onnxruntime's aarch64 build's with ``compare=["onnxruntime"]``.

    Returns:
        The report also written to ``OUT/profile.json``: latency (median/min/max ms), device,
        whether outputs match, and the comparison, inputs, top-k, per-layer and instructions
        sections when asked for.
    """
    from mptc.deploy.profile import profile as run_profile
    from mptc.deploy.settings import ROUNDS

    return run_profile(
        Path(out),
        rpc=rpc,
        tracker=tracker,
        key=key,
        repeat=repeat,
        emulated_board=emulate,
        number=number,
        compare=tuple(compare),
        rounds=ROUNDS if rounds is None else rounds,
        inputs=None if inputs is None else Path(inputs),
        save_outputs=None if save_outputs is None else Path(save_outputs),
        top_k=top_k,
        per_layer=per_layer,
        instructions=instructions,
    )
