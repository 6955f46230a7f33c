"""Layer-level benchmark of the x86 ``ai.mptc`` kernels against onnxruntime and torch fp32.

Every layer is one packed ONNX node compiled through the real frontend and pipeline
(``targets.frontend`` + ``targets.build``) and timed with the Relax VM, side by side in one
process with onnxruntime, torch and TVM (the fp32 model through the same pipeline, our fp32
schedules) running the same maths in fp32 (the ternary weight unpacked and scaled), at 1 and 2
threads; medians. For the binary kernels it prints the fraction of the
popcount bound reached: on AVX-512 a 512-bit word costs ``CYCLES_PER_WORD`` cycles (vpternlogq +
vpopcntq + vpaddq), so ``bound = 512 / CYCLES_PER_WORD * f * threads`` bit-MACs per second, with
every weight bit counted (the mask zeroes pruned taps, it skips no work), ``f`` the clock
``/proc/cpuinfo`` reports; and the fraction of the peak measured here, in the same process, by
the kernels' inner step run on registers only (``popcount_peak``): a virtual machine's reported
clock is not the clock its cores run at, the measured peak is. For the real-input
layers it times both kernels the chooser picks between and prints the break-even sparsity (the
value to keep in ``targets.policy.KernelPolicy``; the measurements go to ``docs/performance.md``).

    .venv/bin/python bench/bench_kernels.py [--quick] [--sign-only | --real-only | --dense-only]
"""

from __future__ import annotations

import os

import mptc  # noqa: E402,F401  (sizes TVM's thread pool before tvm loads)

# torch's OpenMP threads busy-wait after each call; that spinning would be timed as the next
# peer's latency (as in bench_models.py). Set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, replace  # noqa: E402

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
import tvm  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from tvm import relax, te, tirx  # noqa: E402
from tvm.script.ir_builder import IRBuilder  # noqa: E402
from tvm.script.ir_builder import tirx as T  # noqa: E402

from mptc.conventions import pack_bits, sign  # noqa: E402
from mptc.hostinfo import cpuinfo  # noqa: E402
from mptc.ops.reference import DOMAIN, OPSET_VERSION  # noqa: E402
from mptc.targets.build import TIR_PIPELINE, build  # noqa: E402
from mptc.targets.frontend import Lowering, from_onnx  # noqa: E402
from mptc.targets.policy import KernelPolicy, default_policy  # noqa: E402
from mptc.targets.schedules import kernel_schedules  # noqa: E402
from mptc.targets.target import resolve_target  # noqa: E402

CYCLES_PER_WORD = 1.5  # AVX-512 ternlog + popcnt + add per 512-bit word (toolchain notes)
WORD_BITS = 512
THREADS = (1, 2)
SPARSITIES = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95)
CONV_BLOCKS = (1, 2, 4)  # output channels per block the real-input conv benchmark compares
TVM_THREADPOOL_BIG_CORES = 1  # runtime.config_threadpool mode: all (big) cores, n threads


@dataclass(frozen=True)
class Layer:
    """One benchmark layer: a conv ``(C -> O, k x k, size)`` or a dense ``(K -> O)`` at ``batch``."""

    name: str
    op_type: str
    batch: int
    channels: int  # C (conv) or K (dense)
    out: int
    size: int = 1
    kernel: int = 1

    @property
    def input_shape(self) -> list[int]:
        return (
            [self.batch, self.channels, self.size, self.size]
            if self.op_type == "BinaryConv"
            else [self.batch, self.channels]
        )

    @property
    def bit_macs(self) -> int:
        taps = self.channels * self.kernel * self.kernel
        return self.batch * self.out * taps * self.size * self.size


def ternary(rng: np.random.Generator, layer: Layer, sparsity: float) -> np.ndarray:
    shape = (
        (layer.out, layer.channels, layer.kernel, layer.kernel)
        if layer.op_type == "BinaryConv"
        else (layer.out, layer.channels)
    )
    w = rng.choice([-1.0, 1.0], size=shape).astype(np.float32)
    w[rng.random(shape) < sparsity] = 0.0
    return w


def packed_model(layer: Layer, weights: list[np.ndarray], scale: np.ndarray, mode: str) -> onnx.ModelProto:
    """``len(weights)`` chained copies of ``layer`` (same shape in and out when chained), named ``l0, l1, ...``."""
    nodes, inits, x = [], [], "x"
    for i, weight in enumerate(weights):
        rows = weight.reshape(layer.out, -1)
        inits += [
            numpy_helper.from_array(a, f"{n}{i}")
            for a, n in (
                (pack_bits(rows > 0), "s"),
                (pack_bits(rows != 0), "m"),
                (scale, "a"),
                (np.zeros(layer.out, np.float32), "b"),
            )
        ]
        attrs = (
            {"kernel_shape": [layer.kernel] * 2, "pads": [layer.kernel // 2] * 4}
            if layer.op_type == "BinaryConv"
            else {}
        )
        y = "y" if i == len(weights) - 1 else f"l{i}"
        nodes.append(
            helper.make_node(
                layer.op_type,
                [x, f"s{i}", f"m{i}", f"a{i}", f"b{i}"],
                [y],
                name=f"l{i}",
                domain=DOMAIN,
                input_mode=mode,
                **attrs,
            )
        )
        x = y
    return _model(nodes, inits, layer)


def float_model(layer: Layer, weight: np.ndarray, scale: np.ndarray) -> onnx.ModelProto:
    dense = weight * scale.reshape((-1,) + (1,) * (weight.ndim - 1))
    if layer.op_type == "BinaryConv":
        node = helper.make_node(
            "Conv", ["x", "w"], ["y"], kernel_shape=[layer.kernel] * 2, pads=[layer.kernel // 2] * 4
        )
    else:
        node = helper.make_node("Gemm", ["x", "w"], ["y"], transB=1)
    return _model([node], [numpy_helper.from_array(dense.astype(np.float32), "w")], layer)


def _model(nodes, inits, layer: Layer) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        layer.name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, layer.input_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(DOMAIN, OPSET_VERSION)]
    )
    model.ir_version = 10
    return model


class Timer:
    """Medians of ``repeat`` runs of ``number`` calls, in microseconds."""

    def __init__(self, number: int, repeat: int):
        self.number, self.repeat = number, repeat

    def tvm(self, vm: relax.VirtualMachine, x: np.ndarray, threads: int) -> float:
        tvm.get_global_func("runtime.config_threadpool")(TVM_THREADPOOL_BIG_CORES, threads)
        vm.set_input("main", tvm.runtime.tensor(x))
        timer = vm.time_evaluator("invoke_stateful", tvm.cpu(), number=self.number, repeat=self.repeat)
        return timer("main").median * 1e6

    def ort(self, model: onnx.ModelProto, x: np.ndarray, threads: int) -> float:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        return self._median(lambda: session.run(None, {"x": x}))

    def torch(self, layer: Layer, weight: np.ndarray, scale: np.ndarray, x: np.ndarray, threads: int) -> float:
        torch.set_num_threads(threads)
        w = torch.from_numpy(weight * scale.reshape((-1,) + (1,) * (weight.ndim - 1)))
        tx = torch.from_numpy(x)
        if layer.op_type == "BinaryConv":

            def call():
                return torch.nn.functional.conv2d(tx, w, padding=layer.kernel // 2)
        else:

            def call():
                return torch.nn.functional.linear(tx, w)

        with torch.inference_mode():
            return self._median(call)

    def _median(self, call) -> float:
        for _ in range(3):
            call()
        runs = []
        for _ in range(self.repeat):
            start = time.perf_counter()
            for _ in range(self.number):
                call()
            runs.append((time.perf_counter() - start) / self.number)
        return statistics.median(runs) * 1e6


def compile_layer(
    model: onnx.ModelProto,
    layer: Layer,
    break_even: float | None,
    packed: bool = True,
    policy: KernelPolicy | None = None,
) -> relax.VirtualMachine:
    """A packed model through the real frontend and x86 pipeline (``break_even`` forces a real-input
    kernel; ``packed=False`` keeps float activations between binary layers; ``policy`` replaces the
    x86 default)."""
    target = resolve_target("x86")
    kernels = kernel_schedules(target)
    lowering = Lowering(kernels, policy or default_policy("x86"), break_even=break_even, pack_activations=packed)
    return relax.VirtualMachine(
        build(from_onnx(model, lowering, {"x": layer.input_shape}), target, kernels.float_lanes), tvm.cpu()
    )


def cpu_hz() -> float:
    """The fastest core's clock as ``/proc/cpuinfo`` reports it (2.5 GHz when it does not say)."""
    mhz = cpuinfo().mhz
    return (max(mhz) if mhz else 2500.0) * 1e6


PEAK_CHAINS = 16  # independent accumulators: enough to hide the ternlog -> popcount -> add latency
PEAK_STEPS = 4096


def popcount_peak_func(lanes: int, tasks: int) -> tirx.PrimFunc:
    """``tasks`` parallel tasks, each ``PEAK_STEPS`` times ``acc += popcount((acc ^ w) & m)`` on
    ``PEAK_CHAINS`` vectors of ``lanes`` words held in registers: the kernels' inner step with
    no memory traffic (each step reads its own last result, so nothing is hoisted)."""

    def body(seed, out):
        with IRBuilder() as ib:
            with T.parallel(0, tasks) as task:
                accs = [T.alloc_local((lanes,), "uint64") for _ in range(PEAK_CHAINS + 2)]
                for i, acc in enumerate(accs):
                    with T.vectorized(0, lanes) as lane:
                        T.buffer_store(acc, seed[task, i, lane], [lane])
                *chains, w, m = accs
                with T.serial(0, PEAK_STEPS):
                    for acc in chains:
                        with T.vectorized(0, lanes) as lane:
                            T.buffer_store(acc, acc[lane] + tirx.popcount((acc[lane] ^ w[lane]) & m[lane]), [lane])
                for i, acc in enumerate(chains):
                    with T.vectorized(0, lanes) as lane:
                        T.buffer_store(out, acc[lane], [task, i, lane])
        return ib.get()

    seed = te.placeholder((tasks, PEAK_CHAINS + 2, lanes), "uint64", name="seed")
    out = te.extern(
        (tasks, PEAK_CHAINS, lanes), [seed], lambda ins, outs: body(ins[0], outs[0]), name="peak", dtype="uint64"
    )
    return te.create_prim_func([seed, out])


def popcount_peak(threads: int) -> float:
    """Measured words per second (of ``WORD_BITS`` bits) of the XNOR-popcount step on this host at ``threads``."""
    lanes = WORD_BITS // 64
    lib = tvm.compile(
        tvm.IRModule({"main": popcount_peak_func(lanes, threads)}),
        target=resolve_target("x86").tvm_target(),
        tir_pipeline=TIR_PIPELINE,
    )
    seed = np.random.default_rng(0).integers(0, 2**63, (threads, PEAK_CHAINS + 2, lanes), dtype=np.uint64)
    args = [tvm.runtime.tensor(seed), tvm.runtime.tensor(np.zeros((threads, PEAK_CHAINS, lanes), np.uint64))]
    tvm.get_global_func("runtime.config_threadpool")(TVM_THREADPOOL_BIG_CORES, threads)
    seconds = lib.mod.time_evaluator("main", tvm.cpu(), number=20, repeat=7)(*args).median
    return threads * PEAK_STEPS * PEAK_CHAINS / seconds


def bench_binary(timer: Timer, rng, layers: list[Layer]) -> None:
    peaks = {threads: popcount_peak(threads) for threads in THREADS}
    print("\n## binary input (XNOR-popcount) vs fp32\n")
    print(
        "popcount peak measured here (registers only): "
        + ", ".join(
            f"{threads} thread(s) {peak * WORD_BITS / 1e12:.2f} T bit-MAC/s = {cpu_hz() * threads / peak:.2f} cycles "
            f"per {WORD_BITS}-bit word at {cpu_hz() / 1e9:.2f} GHz"
            for threads, peak in peaks.items()
        )
        + "\n"
    )
    print(
        "| layer | threads | mptc us | ort fp32 us | torch fp32 us | tvm fp32 us | vs ort | vs torch | vs tvm | popcount bound | measured peak |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for layer in layers:
        weight, scale = ternary(rng, layer, 0.5), (rng.random(layer.out) + 0.5).astype(np.float32)
        x = rng.standard_normal(layer.input_shape).astype(np.float32)
        signs = sign(x)  # what the fp32 baselines multiply: the same maths as the packed layer
        vm, fp32 = (
            compile_layer(packed_model(layer, [weight], scale, "binary"), layer, None),
            float_model(layer, weight, scale),
        )
        fp32_vm = compile_layer(fp32, layer, None)  # the same maths in fp32 through TVM (our fp32 schedules)
        for threads in THREADS:
            ours, tvm_us = timer.tvm(vm, x, threads), timer.tvm(fp32_vm, signs, threads)
            ort_us, torch_us = timer.ort(fp32, signs, threads), timer.torch(layer, weight, scale, signs, threads)
            bound = WORD_BITS / CYCLES_PER_WORD * cpu_hz() * threads
            rate = layer.bit_macs / (ours * 1e-6)
            print(
                f"| {layer.name} | {threads} | {ours:.0f} | {ort_us:.0f} | {torch_us:.0f} | {tvm_us:.0f} | {ort_us / ours:.1f}x "
                f"| {torch_us / ours:.1f}x | {tvm_us / ours:.1f}x | {rate / bound:.0%} | {rate / (peaks[threads] * WORD_BITS):.0%} |"
            )


def bench_chain(timer: Timer, rng, layer: Layer, depth: int) -> None:
    """``depth`` chained binary layers: float activations between them vs packed signs."""
    print(f"\n## {depth} x {layer.name} chained (MPT-1/1): float vs packed activations between layers\n")
    print("| threads | float between us | packed between us | speed-up |")
    print("|---|---|---|---|")
    model = packed_model(
        layer, [ternary(rng, layer, 0.5) for _ in range(depth)], np.ones(layer.out, np.float32), "binary"
    )
    x = rng.standard_normal(layer.input_shape).astype(np.float32)
    unfused, fused = compile_layer(model, layer, None, packed=False), compile_layer(model, layer, None)
    for threads in THREADS:
        a, b = timer.tvm(unfused, x, threads), timer.tvm(fused, x, threads)
        print(f"| {threads} | {a:.0f} | {b:.0f} | {a / b:.2f}x |")


def bench_sign(timer: Timer, rng, layers: list[Layer], rounds: int = 5) -> None:
    """ONNX ``Sign`` input (sign(0) = 0) against the binary form of the same layer (sign(0) = +1):
    an input with no zero counts as binary, one zero makes the rows whose window holds it count
    exactly, zeros everywhere (every 7th value) every row. Medians of interleaved rounds."""
    print("\n## ONNX Sign input vs the binary form (`Where(x >= 0, 1, -1)`)\n")
    print("| layer | threads | binary us | Sign, no zero | Sign, one zero | Sign, every 7th zero |")
    print("|---|---|---|---|---|---|")
    for layer in layers:
        weight, scale = ternary(rng, layer, 0.5), (rng.random(layer.out) + 0.5).astype(np.float32)
        binary = compile_layer(packed_model(layer, [weight], scale, "binary"), layer, None)
        exact = compile_layer(packed_model(layer, [weight], scale, "sign"), layer, None)
        none = rng.standard_normal(layer.input_shape).astype(np.float32)
        none[none == 0.0] = 0.5
        one, sevens = none.copy(), none.copy()
        one.flat[one.size // 2] = 0.0
        sevens.flat[::7] = 0.0
        runs = [(binary, none), (exact, none), (exact, one), (exact, sevens)]
        for threads in THREADS:
            times = [[timer.tvm(vm, x, threads) for vm, x in runs] for _ in range(rounds)]
            base, *signs = (statistics.median(column) for column in zip(*times))
            cells = " | ".join(f"{t:.0f} us ({t / base:.2f}x)" for t in signs)
            print(f"| {layer.name} | {threads} | {base:.0f} | {cells} |")


def compile_real(packed: onnx.ModelProto, layer: Layer, block: int | None, fp32: bool = False) -> relax.VirtualMachine:
    """A real-input layer with the dense path (``block`` None; dense-ternary where the policy has it,
    fp32 with ``fp32``) or a forced sparse kernel / conv block size."""
    if block is None:
        return compile_layer(
            packed, layer, 1.1, policy=replace(default_policy("x86"), dense_ternary=frozenset()) if fp32 else None
        )
    policy = replace(default_policy("x86"), conv_block=block, short_flat_block=block, long_flat_block=block)
    return compile_layer(packed, layer, 0.0, policy=policy)


def bench_real(timer: Timer, rng, layers: list[Layer], threads_list=THREADS) -> None:
    """Every real-input kernel the chooser picks between, at each sparsity: sparse (per conv block
    size) vs dense vs onnxruntime, and the sparsity from which sparse beats dense."""
    print(
        "\n## real input (MPT-1/32): sparse (conv: block-sparse, B outputs per block) vs the dense path (dense-ternary"
        " where the policy has it, else fp32) and the dense fp32 matmul vs onnxruntime\n"
    )
    print(
        "| layer | sparsity | threads | sparse us by B | best sparse us | dense us | dense fp32 us | ort fp32 us "
        "| torch fp32 us | best vs ort | best vs dense |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    times: dict[tuple[str, int], list[tuple[float, float, float]]] = {}
    for layer in layers:
        x = rng.standard_normal(layer.input_shape).astype(np.float32)
        blocks = CONV_BLOCKS if layer.op_type == "BinaryConv" else [1]
        for sparsity in SPARSITIES:
            weight, scale = ternary(rng, layer, sparsity), (rng.random(layer.out) + 0.5).astype(np.float32)
            packed, fp32 = packed_model(layer, [weight], scale, "real"), float_model(layer, weight, scale)
            sparse_vms, dense_vm = (
                {b: compile_real(packed, layer, b) for b in blocks},
                compile_real(packed, layer, None),
            )
            fp32_vm = compile_real(packed, layer, None, fp32=True) if layer.op_type == "BinaryDense" else None
            for threads in threads_list:
                sparse = {b: timer.tvm(vm, x, threads) for b, vm in sparse_vms.items()}
                best, dense = min(sparse.values()), timer.tvm(dense_vm, x, threads)
                dense_fp32 = f"{timer.tvm(fp32_vm, x, threads):.0f}" if fp32_vm else "-"
                ort_us, torch_us = timer.ort(fp32, x, threads), timer.torch(layer, weight, scale, x, threads)
                times.setdefault((layer.name, threads), []).append((sparsity, best, dense))
                by_block = ", ".join(f"B{b} {t:.0f}" for b, t in sparse.items())
                print(
                    f"| {layer.name} | {sparsity:.2f} | {threads} | {by_block} | {best:.0f} | {dense:.0f} | {dense_fp32} "
                    f"| {ort_us:.0f} | {torch_us:.0f} "
                    f"| {ort_us / best:.2f}x | {dense / best:.2f}x |",
                    flush=True,
                )
    print("\nbreak-even sparsity (best sparse time = dense time, linear between the bracketing measurements):")
    for (name, threads), rows in times.items():
        print(f"  {name}, {threads} thread(s): {break_even(rows)}")
    policy = default_policy("x86")
    print(
        f"  x86 policy defaults sparse_break_even = {policy.sparse_break_even}, conv_block = {policy.conv_block}, "
        f"short_flat_block = {policy.short_flat_block}, long_flat_block = {policy.long_flat_block}"
    )


def break_even(rows: list[tuple[float, float, float]]) -> str:
    """Crossing of ``sparse - dense`` over ``(sparsity, sparse us, dense us)`` rows sorted by sparsity."""
    gaps = [(s, sparse - dense) for s, sparse, dense in rows]
    if gaps[0][1] <= 0:
        return f"<= {gaps[0][0]:.2f}"
    for (s0, g0), (s1, g1) in zip(gaps, gaps[1:]):
        if g1 <= 0 < g0:
            return f"{s0 + (s1 - s0) * g0 / (g0 - g1):.2f}"
    return f"> {gaps[-1][0]:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="Fewer repeats (a smoke run).")
    parser.add_argument(
        "--real-only", action="store_true", help="Only the real-input (MPT-1/32) layers, CIFAR ResNet shapes too."
    )
    parser.add_argument(
        "--dense-only", action="store_true", help="Only real-input dense layers: sparse vs dense-ternary vs fp32."
    )
    parser.add_argument(
        "--sign-only", action="store_true", help="Only ONNX Sign inputs against the binary form of the same layers."
    )
    args = parser.parse_args()
    timer = Timer(number=5, repeat=5) if args.quick else Timer(number=10, repeat=7)
    rng = np.random.default_rng(0)
    print(
        f"host: {resolve_target('x86').spec['mcpu']}, {cpu_hz() / 1e9:.2f} GHz (cpuinfo), load average {os.getloadavg()[0]:.1f} "
        f"on {os.cpu_count()} cores; tvm {tvm.__version__}, ort {ort.__version__}, torch {torch.__version__}"
    )
    if args.dense_only:
        bench_real(
            timer,
            rng,
            [
                Layer(f"dense {k}x{o} b{n}", "BinaryDense", n, k, o)
                for n, k, o in (
                    (1, 64, 512),
                    (1, 512, 512),
                    (8, 512, 512),
                    (1, 2048, 1024),
                    (1, 4096, 4096),
                    (64, 4096, 4096),
                )
            ],
            threads_list=(1, 2),
        )
        return
    sign_layers = [
        Layer("conv3x3 256->256 @14x14 b1", "BinaryConv", 1, 256, 256, size=14, kernel=3),
        Layer("conv3x3 64->64 @56x56 b1", "BinaryConv", 1, 64, 64, size=56, kernel=3),
        Layer("dense 4096x4096 b1", "BinaryDense", 1, 4096, 4096),
    ]
    if args.sign_only:
        bench_sign(timer, rng, sign_layers)
        return
    if args.real_only:
        bench_real(
            timer,
            rng,
            [
                Layer(f"conv3x3 {c}->{c} @{n}x{n} b1", "BinaryConv", 1, c, c, size=n, kernel=3)
                for c, n in ((64, 32), (128, 16), (256, 8), (512, 4))
            ],
            threads_list=(1,),
        )
        return
    bench_binary(
        timer,
        rng,
        [
            Layer("conv3x3 256->256 @14x14 b1", "BinaryConv", 1, 256, 256, size=14, kernel=3),
            Layer("dense 4096x4096 b1", "BinaryDense", 1, 4096, 4096),
            Layer("dense 4096x4096 b64", "BinaryDense", 64, 4096, 4096),
        ],
    )
    bench_sign(timer, rng, sign_layers)
    bench_chain(timer, rng, Layer("conv3x3 256->256 @14x14 b1", "BinaryConv", 1, 256, 256, size=14, kernel=3), depth=4)
    bench_chain(timer, rng, Layer("dense 1024x1024 b1", "BinaryDense", 1, 1024, 1024), depth=4)
    print(f"\nload average after the binary layers: {os.getloadavg()[0]:.1f}")
    bench_real(
        timer,
        rng,
        [
            Layer("conv3x3 256->256 @14x14 b1", "BinaryConv", 1, 256, 256, size=14, kernel=3),
            Layer("dense 4096x4096 b1", "BinaryDense", 1, 4096, 4096),
            Layer("dense 4096x4096 b64", "BinaryDense", 64, 4096, 4096),
        ],
    )


if __name__ == "__main__":
    main()
