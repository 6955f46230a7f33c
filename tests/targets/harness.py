"""Build one packed model for x86 through the real frontend and pipeline, run it, and run the reference."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import tvm
from onnx.reference import ReferenceEvaluator
from tvm import relax

from mptc.ops.reference import REFERENCE_OPS
from mptc.targets.build import build
from mptc.targets.frontend import Lowering, from_onnx
from mptc.targets.policy import KernelPolicy, default_policy
from mptc.targets.schedules import KernelSchedules, kernel_schedules
from mptc.targets.target import resolve_target


def input_shape(model: onnx.ModelProto) -> list[int]:
    return [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]


def lower_x86(
    model: onnx.ModelProto,
    break_even: float | None = None,
    kernels: KernelSchedules | None = None,
    policy: KernelPolicy | None = None,
) -> tuple[tvm.IRModule, Lowering]:
    """The model's Relax module for this host; ``break_even`` forces the real-input kernel (0:
    sparse, >1: dense); ``kernels`` replaces the host's kernel schedules (any CPU family's tiles
    run here), ``policy`` the x86 default policy."""
    kernels = kernels or kernel_schedules(resolve_target("x86"))
    lowering = Lowering(kernels, policy or default_policy("x86"), break_even=break_even)
    return from_onnx(model, lowering, {"x": input_shape(model)}), lowering


def compile_x86(
    model: onnx.ModelProto,
    break_even: float | None = None,
    kernels: KernelSchedules | None = None,
    policy: KernelPolicy | None = None,
) -> tuple[relax.VirtualMachine, Lowering]:
    """The model compiled for this host (arguments as :func:`lower_x86`)."""
    mod, lowering = lower_x86(model, break_even, kernels, policy)
    return build_x86(mod, lowering), lowering


def build_x86(mod: tvm.IRModule, lowering: Lowering) -> relax.VirtualMachine:
    """``mod`` (from :func:`lower_x86`) built for this host and loaded."""
    return relax.VirtualMachine(build(mod, resolve_target("x86"), lowering.kernels.float_lanes), tvm.cpu())


def run(vm: relax.VirtualMachine, x: np.ndarray) -> np.ndarray:
    return vm["main"](tvm.runtime.tensor(x)).numpy()


def reference(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return ReferenceEvaluator(model, new_ops=REFERENCE_OPS).run(None, {"x": x})[0]


def sample(model: onnx.ModelProto, seed: int = 0) -> np.ndarray:
    """N(0, 1) input with exact zeros sprinkled in: sign(0) = +1 must hold in the kernels too."""
    x = np.random.default_rng(seed).standard_normal(input_shape(model)).astype(np.float32)
    x.reshape(-1)[::7] = 0.0
    return x


def relative_error(y: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(y - ref).max() / max(np.abs(ref).max(), 1e-30))


def compile_and_run(model: onnx.ModelProto, kernels=None, policy=None) -> tuple[np.ndarray, list[str], Lowering]:
    """The module's output on :func:`random_input`, its ``mptc_`` kernels, and the lowering."""
    mod, lowering = lower_x86(model, kernels=kernels, policy=policy)
    ours = sorted(gv.name_hint for gv in mod.functions if gv.name_hint.startswith("mptc_"))
    return run(build_x86(mod, lowering), random_input(model)), ours, lowering


def onnxruntime_output(model: onnx.ModelProto) -> np.ndarray:
    """onnxruntime's output on :func:`random_input`."""
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": random_input(model)})[0]


def random_input(model: onnx.ModelProto) -> np.ndarray:
    """The N(0, 1) input ``compile_and_run`` and ``onnxruntime_output`` both take."""
    return np.random.default_rng(7).standard_normal(input_shape(model)).astype(np.float32)
