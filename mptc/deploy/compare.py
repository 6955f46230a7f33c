"""The peers ``mptc profile --compare`` times a module against: onnxruntime on the model it was compiled from.

Every peer runs ``OUT/source.onnx`` (the model compiled, checked against the manifest's sha256) on
this host, on the same inputs as the module:

* ``onnxruntime``: an fp32 CPU session, default threads, on the fp32 network a packed model
  encodes: its ``ai.mptc`` nodes become standard Conv/Gemm on the weights unpacked once
  (``mptc.ops.unpack``). Their ONNX function bodies would unpack on every call wherever
  onnxruntime cannot fold them (a symbolic batch keeps ``Shape -> Slice`` alive), timing the
  bit arithmetic instead of the network.
* ``onnxruntime-int8``: onnxruntime's static INT8 quantization (QDQ, per-channel weights, MinMax
  calibration on the inputs profiled) of that fp32 network.

A module on a board (RPC, tracker, emulator) is compared with peers run here: two machines, which
the report says.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from mptc.artifact import SOURCE_MODEL_FILE
from mptc.conventions import for_onnxruntime
from mptc.errors import UnsupportedError, first_line
from mptc.ops.reference import DOMAIN
from mptc.ops.unpack import unpack_model
from mptc.targets.int8_inputs import without_int8_inputs

PEERS = ("onnxruntime", "onnxruntime-int8")
CALIBRATION_BATCHES = 32  # onnxruntime's calibration keeps every activation of every sample in memory


@dataclass(frozen=True)
class Peer:
    """A peer ready to run: ``description`` says what it runs, for the report."""

    name: str
    description: str
    session: Any  # onnxruntime.InferenceSession
    input_name: str

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x})[0]

    def call(self, x: np.ndarray) -> Callable[[], object]:
        """One run on ``x``, as :func:`mptc.report.latency.time_call` times it."""
        feed = {self.input_name: x}
        return lambda: self.session.run(None, feed)


def check_peers(names: Sequence[str]) -> tuple[str, ...]:
    """``names`` without repeats, in order; an unknown one is an UnsupportedError naming the known ones."""
    unknown = [name for name in names if name not in PEERS] or ([] if names else ["(none)"])
    if unknown:
        raise UnsupportedError(
            f"unknown peer '{unknown[0]}' to compare with: expected one or more of {', '.join(PEERS)}"
        )
    return tuple(dict.fromkeys(names))


def load_peers(
    names: Sequence[str],
    source: bytes,
    input_name: str,
    calibration: Sequence[np.ndarray],
    threads: int | None = None,
) -> list[Peer]:
    """Sessions for the peers ``names`` on the source model (its fp32 network: the uint8 inputs of an
    int8 build unquantized, ``targets.int8_inputs``); ``calibration``: the INT8 peer's batches;
    ``threads``: the intra-op threads each runs with, the module's where it runs on this host
    (None: onnxruntime's default, every core).

    Raises:
        UnsupportedError: onnxruntime cannot run or quantize the model, or its ``ai.mptc`` layers
            cannot be unpacked (``mptc.ops.unpack``).
    """
    import onnxruntime as ort

    model = onnx.load_from_string(source)
    packed = [node.op_type for node in model.graph.node if node.domain == DOMAIN]
    unpacked = f", its {len(packed)} ai.mptc layers as fp32 Conv/Gemm on the unpacked weights" if packed else ""
    network = unpack_model(without_int8_inputs(model))
    peers = []
    for name in check_peers(names):
        if name == "onnxruntime":
            description = f"onnxruntime {ort.__version__} fp32 on {SOURCE_MODEL_FILE}{unpacked}"
            runnable = network
        else:
            batches = calibration[:CALIBRATION_BATCHES]
            description = (
                f"onnxruntime {ort.__version__} static INT8 (QDQ, per-channel weights, calibrated on "
                f"{sum(b.shape[0] if b.ndim else 1 for b in batches)} sample(s)) of {SOURCE_MODEL_FILE}{unpacked}"
            )
            runnable = quantize_int8(network, input_name, batches)
        if threads is not None:
            description += f", at {threads} thread(s) as the module"
        peers.append(Peer(name, description, _session(runnable, name, threads), input_name))
    return peers


def _session(model: onnx.ModelProto, peer: str, threads: int | None) -> Any:
    import onnxruntime as ort
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

    runnable = for_onnxruntime(model)
    options = ort.SessionOptions()
    options.log_severity_level = 3  # its warnings would cross the CLI's one-line contract
    if threads is not None:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(runnable.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except (ort_errors.Fail, ort_errors.InvalidGraph, ort_errors.InvalidArgument, ort_errors.NotImplemented) as error:
        raise UnsupportedError(f"onnxruntime cannot load the model for peer {peer}: {first_line(error)}") from error


def quantize_int8(model: onnx.ModelProto, input_name: str, calibration: Sequence[np.ndarray]) -> onnx.ModelProto:
    """``model`` (standard ONNX) constant-folded and statically quantized to INT8 by onnxruntime."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds: Iterator[dict[str, np.ndarray]] = iter([{input_name: batch} for batch in calibration])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

    runnable = for_onnxruntime(model)
    with tempfile.TemporaryDirectory(prefix="mptc-int8-") as tmp:
        fp32, folded, int8 = (Path(tmp) / name for name in ("fp32.onnx", "folded.onnx", "int8.onnx"))
        onnx.save(runnable, fp32)
        # the quantizer logs its per-tensor fallbacks as root-logger warnings: not the user's to read
        logging.disable(logging.WARNING)
        try:
            quant_pre_process(str(fp32), str(folded), skip_symbolic_shape=True)
            quantize_static(str(folded), str(int8), Batches(), quant_format=QuantFormat.QDQ, per_channel=True)
        except Exception as error:  # noqa: BLE001 - the quantizer raises whatever its graph walk meets
            raise UnsupportedError(
                f"onnxruntime cannot quantize {SOURCE_MODEL_FILE} to INT8: {first_line(error)}"
            ) from error
        finally:
            logging.disable(logging.NOTSET)
        return onnx.load(int8)
