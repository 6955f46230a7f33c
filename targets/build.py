"""Lower and build a Relax module for a :class:`~mptc.targets.target.CompileTarget`.

The kernels arrive already scheduled (``tirx.is_scheduled``). On CPU the Relax pipeline is TVM's
``cpu_generic`` one with our glue rules (``targets.schedules.cpu_glue``) added after fusion, since
the default CPU pipeline schedules nothing, framed by TVM's weight-prepacking passes: constants are
marked layout-free before the rules run, and the layout rewrites the rules leave are split out
and folded into the constants at compile time (what ``static_shape_tuning_pipeline`` does with
``cpu_weight_prepack``, for weights that are constants rather than parameters). On CUDA it is
TVM's default CUDA pipeline, which applies dlight's GPU rules to the glue. The TIR pipeline is
TVM's default with ``LocalBuffersOnStack`` before the host finalization, so register tiles stay
in registers (``targets.stack_buffers``).
"""

from __future__ import annotations

from collections.abc import Sequence

import tvm
from tvm import relax
from tvm.relax.backend.cpu_generic import pipeline as cpu_pipeline
from tvm.s_tir import dlight as dl
from tvm.s_tir import pipeline as s_tir_pipeline
from tvm.tirx import compilation_pipeline

from mptc.targets.schedules.cpu_glue import glue_rules
from mptc.targets.shift_insert import ShiftInsert
from mptc.targets.stack_buffers import LocalBuffersOnStack
from mptc.targets.target import CompileTarget

TIR_PIPELINE = "mptc"


def relax_pipeline(target: CompileTarget, float_lanes: int, tuned: Sequence[tvm.transform.Pass] = ()):
    """The Relax pipeline for ``target``: TVM's default for CUDA, with our glue schedules for CPU.
    ``tuned`` (CPU): passes that schedule some functions before the glue rules take the rest, e.g.
    MetaSchedule's ``MetaScheduleApplyDatabase`` (``bench/bench_metaschedule.py``)."""
    if target.family == "cuda":
        return "default"
    tvm_target = target.tvm_target()
    passes = (
        fused_functions(tvm_target)
        + [
            *tuned,
            dl.ApplyDefaultSchedule(
                *glue_rules(float_lanes, vector_registers(target, float_lanes), target.family == "arm")
            ),
        ]
        + [
            relax.transform.SplitLayoutRewritePreproc(),
            relax.transform.FoldConstant(),
            relax.transform.DeadCodeElimination(),
            drop_uncalled_kernels,
        ]
        + cpu_pipeline.dataflow_lower_passes(tvm_target)
        + cpu_pipeline.finalize_passes(tvm_target)
    )

    @tvm.transform.module_pass(opt_level=0, name="MptcCpuPipeline")
    def _pipeline(mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        with tvm_target:
            return tvm.transform.Sequential(passes)(mod)

    return _pipeline


def fused_functions(tvm_target: tvm.target.Target) -> list[tvm.transform.Pass]:
    """The CPU passes that bring a Relax module to the legalized, fused functions the glue rules
    (or a tuning database) schedule, their constant operands marked layout-free."""
    return (
        cpu_pipeline.library_dispatch_passes(tvm_target)
        + cpu_pipeline.legalize_passes(tvm_target)
        + [relax.transform.AttachAttrLayoutFreeBuffers()]
    )


@tvm.transform.module_pass(opt_level=0, name="MptcDropUncalledKernels")
def drop_uncalled_kernels(mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
    """``mod`` without the PrimFuncs no Relax function calls. The kernels carry a ``global_symbol``
    (``frontend.Lowering.call_kernel``), which keeps them through ``DeadCodeElimination``, so the
    copies earlier passes leave (a renamed copy of each kernel; where a layout rewrite is split
    out, the kernel before the split and the rewrite folded into its constant) would go into the
    module as code no one runs."""
    called = {
        gv.name_hint
        for func in mod.functions.values()
        if isinstance(func, relax.Function)
        for gv in relax.analysis.all_global_vars(func)
    }
    return tvm.IRModule(
        {gv: func for gv, func in mod.functions.items() if isinstance(func, relax.Function) or gv.name_hint in called},
        attrs=mod.attrs,
        global_infos=mod.global_infos,
    )


def vector_registers(target: CompileTarget, float_lanes: int) -> int:
    """Vector registers of a CPU target: 32 on aarch64 (NEON) and with AVX-512 (16 fp32 lanes), 16 with AVX2."""
    return 32 if target.family == "arm" or float_lanes >= 16 else 16


def tir_pipeline():
    """TVM's default TIR pipeline, with small ``local`` buffers kept on the stack in host code
    and, on aarch64, packed sign words built by ``sli`` (``targets.shift_insert``)."""
    lower, finalize_host, finalize_device = s_tir_pipeline.default_s_tir_pipeline()

    def finalize_host_on_stack() -> tvm.transform.Pass:
        return tvm.transform.Sequential([LocalBuffersOnStack(), ShiftInsert(), finalize_host()])

    return lower, finalize_host_on_stack, finalize_device


compilation_pipeline.register_tir_pipeline(TIR_PIPELINE, tir_pipeline)


# LoopPartition splits constant-extent loops too: a kernel marks the bounds of its padding
# ``likely`` (``kernels.depthwise``) so that its copy loops lose the test in their interior.
PASS_CONFIG = {"s_tir.LoopPartition": {"partition_const_loop": True}}


def build(
    mod: tvm.IRModule, target: CompileTarget, float_lanes: int, tuned: Sequence[tvm.transform.Pass] = ()
) -> relax.VMExecutable:
    """Compile ``mod`` (a Relax module from ``targets.frontend``) into a VM executable; ``tuned``:
    as in :func:`relax_pipeline`."""
    with tvm.transform.PassContext(config=PASS_CONFIG):
        return tvm.compile(
            mod,
            target=target.tvm_target(),
            relax_pipeline=relax_pipeline(target, float_lanes, tuned),
            tir_pipeline=TIR_PIPELINE,
        )
