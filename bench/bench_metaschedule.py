"""MetaSchedule's tuned schedules against mptc's glue rules, on the fp32 layers of ``bench_glue.py``.

Why: TVM's own way to schedule the fp32 parts is tuning (MetaSchedule) with a database applied at
compile time; mptc writes rules by hand instead (``targets.schedules.cpu_glue``). This measures
whether a shipped database would beat them. Each layer's fp32 function, as mptc's pipeline hands it
to the glue rules (legalized, fused, its constants marked layout-free), is tuned for ``--trials``
(evolutionary search, XGBoost cost model, every core of the host); the layer is then compiled by mptc's own
pipeline twice, with the database applied before the rules (``targets.build.build(..., tuned=)``)
and without, and both are timed side by side with onnxruntime in one process, in interleaved
rounds, as ``bench_glue.py`` times them.

MetaSchedule needs packages the product does not (psutil, cloudpickle, xgboost) and an older
``apache-tvm-ffi`` (0.1.15.post2 segfaults in ``ToJSONGraph``), so it runs in its own environment,
with the project installed into it without its dependencies (no torch needed):

    python3 -m venv .ms && .ms/bin/pip install apache-tvm==0.27.0.post1 apache-tvm-ffi==0.1.14.post1 \\
        psutil cloudpickle xgboost onnx onnxruntime onnx-ir onnxscript click safetensors tqdm ml_dtypes
    .ms/bin/pip install --no-deps -e .
    .ms/bin/python bench/bench_metaschedule.py --layers "conv3x3 128@28" --trials 768 --work-dir runs/ms

Tuning records accumulate in ``--work-dir/<layer>``: a second run goes on from the first's best
(``--trials 0`` only compiles and times what the database holds).
"""

from __future__ import annotations

import mptc  # noqa: F401  (sizes TVM's thread pool before tvm loads)

TRIALS_PER_ROUND = 32  # candidates measured per search round (MetaSchedule's default: 64)
BUILD_TIMEOUT_S = 120  # one candidate's compile; tiled convs take seconds
MAX_REL_ERROR = 1e-4  # of the output's largest magnitude, against onnxruntime

import argparse  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import tvm  # noqa: E402
from bench_glue import Layer, check, layers, ort_timer, tvm_timer  # noqa: E402
from tvm import relax  # noqa: E402
from tvm.s_tir import meta_schedule as ms  # noqa: E402

from mptc.hostinfo import cpuinfo  # noqa: E402
from mptc.report.latency import interleaved_rounds, median_ratio  # noqa: E402
from mptc.targets.build import build, fused_functions  # noqa: E402
from mptc.targets.frontend import Lowering, from_onnx  # noqa: E402
from mptc.targets.policy import default_policy  # noqa: E402
from mptc.targets.schedules import kernel_schedules  # noqa: E402
from mptc.targets.target import CompileTarget, resolve_target  # noqa: E402


def build_candidate(mod: tvm.IRModule, target: tvm.target.Target, _params: object) -> tvm.runtime.Module:
    """MetaSchedule's default build without its ``import tvm.s_tir.tensor_intrin`` (about 30 s in
    every fresh worker, past the builder's timeout); the weight layout is taken as already rewritten."""
    from tvm.driver import build as tvm_build
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    return tvm_build(RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod), target=target)


def fp32_functions(layer: Layer, target: CompileTarget) -> tuple[tvm.IRModule, list[tvm.tirx.PrimFunc]]:
    """The layer's Relax module from mptc's frontend, and the fused fp32 functions the glue rules
    would schedule (not mptc's own kernels, which arrive scheduled)."""
    mod = from_onnx(layer.model, Lowering(kernel_schedules(target), default_policy("x86")), {"x": layer.input_shape})
    with target.tvm_target() as tvm_target:
        prepared = tvm.transform.Sequential(fused_functions(tvm_target))(mod)
    funcs = [f for f in prepared.functions.values() if isinstance(f, tvm.tirx.PrimFunc)]
    glue = [f for f in funcs if not (f.attrs or {}).get("tirx.is_scheduled", False)]  # not mptc's own kernels
    if not glue:
        raise SystemExit(f"{layer.name}: mptc's own kernel runs it, no fp32 function to tune")
    return mod, glue


def tune(funcs: list[tvm.tirx.PrimFunc], target: CompileTarget, trials: int, work_dir: Path) -> None:
    """``trials`` more MetaSchedule trials for each function, recorded in ``work_dir``'s database."""
    for func in funcs:
        ms.tune_tir(
            mod=tvm.IRModule({"main": func}),
            target=target.tvm_target(),
            work_dir=str(work_dir),
            max_trials_global=trials,
            num_trials_per_iter=TRIALS_PER_ROUND,
            builder=ms.builder.LocalBuilder(f_build=build_candidate, timeout_sec=BUILD_TIMEOUT_S),
            runner=ms.runner.LocalRunner(evaluator_config=ms.runner.EvaluatorConfig(number=3, min_repeat_ms=50)),
        )


def compile_tuned(mod: tvm.IRModule, target: CompileTarget, work_dir: Path) -> relax.VirtualMachine:
    """``mod`` through mptc's pipeline with the database's schedules applied before the glue rules."""
    database = ms.database.JSONDatabase(work_dir=str(work_dir))
    with target.tvm_target():
        apply = relax.transform.MetaScheduleApplyDatabase(enable_warning=True)
    with database:
        executable = build(mod, target, kernel_schedules(target).float_lanes, tuned=[apply])
    return relax.VirtualMachine(executable, tvm.cpu())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", required=True, help="comma-separated names of bench_glue.py's layers")
    parser.add_argument("--trials", type=int, default=256, help="MetaSchedule trials per fp32 function this run")
    parser.add_argument("--work-dir", type=Path, required=True, help="tuning databases, one folder per layer")
    parser.add_argument("--threads", default="2,1")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    wanted = args.layers.split(",")
    chosen = [layer for layer in layers() if layer.name in wanted]
    if len(chosen) != len(wanted):
        raise SystemExit(f"no such layer in bench_glue.py: {sorted(set(wanted) - {layer.name for layer in chosen})}")
    info = cpuinfo()
    print(f"host: {info.model}, {len(info.mhz)} cores; tvm {tvm.__version__}, onnxruntime {ort.__version__}")
    print("| layer | trials | threads | mptc rules us | tuned us | onnxruntime us | rules / tuned | ort / tuned |")
    print("|---|---|---|---|---|---|---|---|")
    target = resolve_target("x86")
    lanes = kernel_schedules(target).float_lanes
    for layer in chosen:
        work_dir = args.work_dir / re.sub(r"\W+", "_", layer.name)
        work_dir.mkdir(parents=True, exist_ok=True)
        mod, funcs = fp32_functions(layer, target)
        if args.trials:
            tune(funcs, target, args.trials, work_dir)
        vms = {
            "rules": relax.VirtualMachine(build(mod, target, lanes), tvm.cpu()),
            "tuned": compile_tuned(mod, target, work_dir),
        }
        trials = len((work_dir / "database_tuning_record.json").read_text().splitlines())
        x = np.random.default_rng(1).standard_normal(layer.input_shape).astype(np.float32)
        for name, vm in vms.items():
            error = check(vm, layer.model, x)
            if not error <= MAX_REL_ERROR:  # NaN fails too
                raise SystemExit(f"{layer.name}: the {name} module is {error:.1e} off onnxruntime")
        for n in (int(t) for t in args.threads.split(",")):
            timers = {name: tvm_timer(vm, x, n) for name, vm in vms.items()}
            timers["ort"] = ort_timer(layer.model, x, n)
            samples = interleaved_rounds(timers, args.rounds)
            median = {name: statistics.median(s) * 1e6 for name, s in samples.items()}
            print(
                f"| {layer.name} | {trials} | {n} | {median['rules']:.0f} | {median['tuned']:.0f} | {median['ort']:.0f} "
                f"| {median_ratio(samples['rules'], samples['tuned']):.2f}x | {median_ratio(samples['ort'], samples['tuned']):.2f}x |",
                flush=True,
            )


if __name__ == "__main__":
    main()
