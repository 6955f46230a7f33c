"""Per-layer benchmark of the fp32 glue (``targets.schedules.cpu_glue``) vs onnxruntime fp32.

Every real model keeps fp32 layers (the stem conv, depthwise convs, pooling, the classifier, the
layers below the sparse break-even); they are compiled by TVM's Relax CPU pipeline with mptc's
schedule rules. Each layer here is a one-node ONNX model (conv + bias + Relu / Clip where a
network fuses them) on the ImageNet shapes of resnet18/50 and mobilenet_v2, compiled through
mptc's real frontend and pipeline and timed side by side with onnxruntime in one process, at the
same thread count, in interleaved rounds (each round: TVM's ``time_evaluator`` median, then
onnxruntime's median, each side after a pause that lets the other's pool threads go idle:
``mptc.report.latency.interleaved_rounds``). Reported: the median and min over rounds and the
median of the per-round ratios, so a slow phase of the shared host that spans a round slows both
sides of its ratio.

With ``--networks``, whole resnet18 and mobilenet_v2 (batch-norm folded, random weights) are
timed the same way, and resnet50. With ``--tickets 0.5,0.9`` also their tickets at each sparsity: every conv
but the 3-channel stem and the depthwise ones made ternary (the largest magnitudes kept, ``alpha``
per output channel), packed by ``mptc optimize``'s pipeline and compiled with mptc's kernels, against
onnxruntime on the same ternary network in fp32; ``--binary-act`` gives the resnets' tickets binary
activations (a sign before each ternary conv: MPT-1/1).

    .venv/bin/python bench/bench_glue.py [--layers stem,dw] [--threads 1,2] [--rounds 5] [--networks]
    .venv/bin/python bench/bench_glue.py --layers none --tickets 0.5,0.9 [--binary-act] --threads 1,2
"""

from __future__ import annotations

import mptc  # noqa: F401  (sizes TVM's thread pool before tvm loads)
from mptc.artifact import ThreadPool
from mptc.deploy import thread_pool

thread_pool.apply(ThreadPool())  # the pool a compiled module's manifest records (spin 1000, unbound), before tvm loads

TVM_THREADPOOL_BIG_CORES = 1  # runtime.config_threadpool mode: all (big) cores, n threads
TARGET_SECONDS = 0.02  # each side's timed batch of calls lasts about this long

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import tvm  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from tvm import relax  # noqa: E402

from mptc.hostinfo import cpuinfo  # noqa: E402
from mptc.passes.pipeline import optimize  # noqa: E402
from mptc.report.latency import interleaved_rounds, median_ratio  # noqa: E402
from mptc.targets.build import build  # noqa: E402
from mptc.targets.frontend import Lowering, from_onnx  # noqa: E402
from mptc.targets.policy import default_policy  # noqa: E402
from mptc.targets.schedules import kernel_schedules  # noqa: E402
from mptc.targets.target import resolve_target  # noqa: E402


@dataclass(frozen=True)
class Layer:
    """One benchmarked layer: a name and the ONNX model of it."""

    name: str
    model: onnx.ModelProto

    @property
    def input_shape(self) -> list[int]:
        return [d.dim_value for d in self.model.graph.input[0].type.tensor_type.shape.dim]


def _model(
    nodes: list, x_shape: list[int], inits: dict[str, np.ndarray], y_shape: list[int] | None = None
) -> onnx.ModelProto:
    for node in nodes:  # named after their output, as exporters name every node
        node.name = node.name or node.output[0]
    graph = helper.make_graph(
        nodes,
        "layer",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model


def conv(
    name: str,
    cin: int,
    cout: int,
    size: int,
    kernel: int,
    stride: int = 1,
    groups: int = 1,
    act: str = "relu",
    batch: int = 1,
) -> Layer:
    """Conv + bias, then Relu, Clip(0, 6) or nothing (``act`` "relu" / "clip" / "")."""
    rng = np.random.default_rng(0)
    inits = {
        "w": rng.standard_normal((cout, cin // groups, kernel, kernel)) * (2.0 / (cin // groups * kernel**2)) ** 0.5,
        "b": rng.standard_normal(cout) * 0.1,
    }
    pad = kernel // 2
    out = "y" if not act else "c"
    nodes = [
        helper.make_node(
            "Conv",
            ["x", "w", "b"],
            [out],
            kernel_shape=[kernel, kernel],
            pads=[pad] * 4,
            strides=[stride, stride],
            group=groups,
        )
    ]
    if act == "relu":
        nodes.append(helper.make_node("Relu", ["c"], ["y"]))
    elif act == "clip":
        inits["lo"], inits["hi"] = np.array(0.0), np.array(6.0)
        nodes.append(helper.make_node("Clip", ["c", "lo", "hi"], ["y"]))
    return Layer(name, _model(nodes, [batch, cin, size, size], inits))


def maxpool(name: str, channels: int, size: int, batch: int = 1) -> Layer:
    node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    return Layer(name, _model([node], [batch, channels, size, size], {}))


def global_pool(name: str, channels: int, size: int, batch: int = 1) -> Layer:
    return Layer(name, _model([helper.make_node("GlobalAveragePool", ["x"], ["y"])], [batch, channels, size, size], {}))


def gemm(name: str, k: int, n: int, batch: int = 1) -> Layer:
    rng = np.random.default_rng(0)
    inits = {"w": rng.standard_normal((n, k)) / k**0.5, "b": rng.standard_normal(n) * 0.1}
    return Layer(name, _model([helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)], [batch, k], inits))


def layers() -> list[Layer]:
    """resnet18/50 and mobilenet_v2 fp32 layers at 224x224 input."""
    return [
        conv("stem 7x7 3->64 s2 @224", 3, 64, 224, 7, stride=2),
        maxpool("maxpool 3x3 s2 64@112", 64, 112),
        conv("conv3x3 64@56", 64, 64, 56, 3),
        conv("conv3x3 64->128 s2 @56", 64, 128, 56, 3, stride=2),
        conv("conv3x3 128@28", 128, 128, 28, 3),
        conv("conv3x3 128->256 s2 @28", 128, 256, 28, 3, stride=2),
        conv("conv3x3 256@14", 256, 256, 14, 3),
        conv("conv3x3 256->512 s2 @14", 256, 512, 14, 3, stride=2),
        conv("conv3x3 512@7", 512, 512, 7, 3),
        conv("conv1x1 64->128 s2 @56 (shortcut)", 64, 128, 56, 1, stride=2, act=""),
        conv("conv1x1 256->64 @56", 256, 64, 56, 1),
        conv("conv1x1 64->256 @56", 64, 256, 56, 1, act=""),
        conv("conv1x1 512->128 @28", 512, 128, 28, 1),
        conv("conv1x1 1024->256 @14", 1024, 256, 14, 1),
        conv("conv1x1 256->1024 @14", 256, 1024, 14, 1, act=""),
        conv("conv1x1 2048->512 @7", 2048, 512, 7, 1),
        conv("dw3x3 32@112 clip", 32, 32, 112, 3, groups=32, act="clip"),
        conv("dw3x3 96@112 s2 clip", 96, 96, 112, 3, stride=2, groups=96, act="clip"),
        conv("dw3x3 144@56 clip", 144, 144, 56, 3, groups=144, act="clip"),
        conv("dw3x3 144@56 s2 clip", 144, 144, 56, 3, stride=2, groups=144, act="clip"),
        conv("dw3x3 192@28 clip", 192, 192, 28, 3, groups=192, act="clip"),
        conv("dw3x3 192@28 s2 clip", 192, 192, 28, 3, stride=2, groups=192, act="clip"),
        conv("dw3x3 384@14 clip", 384, 384, 14, 3, groups=384, act="clip"),
        conv("dw3x3 576@14 clip", 576, 576, 14, 3, groups=576, act="clip"),
        conv("dw3x3 576@14 s2 clip", 576, 576, 14, 3, stride=2, groups=576, act="clip"),
        conv("dw3x3 960@7 clip", 960, 960, 7, 3, groups=960, act="clip"),
        conv("stem 3x3 3->32 s2 @224 clip", 3, 32, 224, 3, stride=2, act="clip"),
        conv("pw1x1 32->16 @112", 32, 16, 112, 1, act=""),
        conv("pw1x1 16->96 @112 clip", 16, 96, 112, 1, act="clip"),
        conv("pw1x1 24->144 @56 clip", 24, 144, 56, 1, act="clip"),
        conv("pw1x1 144->24 @56", 144, 24, 56, 1, act=""),
        conv("pw1x1 32->192 @28 clip", 32, 192, 28, 1, act="clip"),
        conv("pw1x1 96->576 @14 clip", 96, 576, 14, 1, act="clip"),
        conv("pw1x1 160->960 @7 clip", 160, 960, 7, 1, act="clip"),
        conv("pw1x1 192->64 @28 clip", 192, 64, 28, 1, act="clip"),
        conv("pw1x1 576->160 @7", 576, 160, 7, 1, act=""),
        conv("pw1x1 320->1280 @7 clip", 320, 1280, 7, 1, act="clip"),
        global_pool("gap 512@7", 512, 7),
        global_pool("gap 2048@7", 2048, 7),
        gemm("gemm 512->1000", 512, 1000),
        gemm("gemm 2048->1000", 2048, 1000),
        conv("conv3x3 64@56 b8", 64, 64, 56, 3, batch=8),
        conv("dw3x3 144@56 clip b8", 144, 144, 56, 3, groups=144, act="clip", batch=8),
        conv("conv1x1 1024->256 @14 b8", 1024, 256, 14, 1, batch=8),
        gemm("gemm 512->1000 b8", 512, 1000, batch=8),
    ]


class _Network:
    """A whole network, batch-norm folded into conv biases (as exported for inference), built
    node by node, each named after its output (as exporters name them): its fp32 glue end to end, with the residual adds and the classifier. With a
    ``sparsity``, a ticket: every conv but the stem and the depthwise ones ternary, and with
    ``binary_act`` a sign (``Where(x >= 0, 1, -1)``) before each of them."""

    def __init__(self, sparsity: float | None = None, binary_act: bool = False) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: dict[str, np.ndarray] = {
            "lo": np.array(0.0),
            "hi": np.array(6.0),
            "plus": np.array(1.0),
            "minus": np.array(-1.0),
        }
        self.rng = np.random.default_rng(0)
        self.sparsity, self.binary_act = sparsity, binary_act

    def _name(self, prefix: str) -> str:
        return f"{prefix}{len(self.nodes)}_{len(self.inits)}"

    def conv(self, x: str, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: str = "") -> str:
        w, b, y = self._name("w"), self._name("b"), self._name("c")
        fan_in = cin // groups * kernel**2
        self.inits[w] = self.rng.standard_normal((cout, cin // groups, kernel, kernel)) * (2.0 / fan_in) ** 0.5
        self.inits[b] = self.rng.standard_normal(cout) * 0.1
        if self.sparsity is not None and cin > 3 and groups == 1:
            self.inits[w] = _ternary(self.inits[w], self.sparsity)
            if self.binary_act:
                test = self._name("ge")
                self.nodes.append(helper.make_node("GreaterOrEqual", [x, "lo"], [test], name=test))
                x = self.node("Where", [test, "plus", "minus"])
        pads = [kernel // 2] * 4
        self.nodes.append(
            helper.make_node(
                "Conv", [x, w, b], [y], name=y, kernel_shape=[kernel] * 2, pads=pads, strides=[stride] * 2, group=groups
            )
        )
        return self.act(y, act)

    def act(self, x: str, act: str) -> str:
        if not act:
            return x
        y = self._name("a")
        inputs = [x, "lo", "hi"] if act == "clip" else [x]
        self.nodes.append(helper.make_node("Clip" if act == "clip" else "Relu", inputs, [y], name=y))
        return y

    def node(self, op: str, inputs: list[str], **attrs) -> str:
        y = self._name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [y], name=y, **attrs))
        return y

    def classifier(self, x: str, channels: int) -> onnx.ModelProto:
        flat = self.node("Flatten", [self.node("GlobalAveragePool", [x])])
        self.inits["fc_w"] = self.rng.standard_normal((1000, channels)) / channels**0.5
        self.inits["fc_b"] = np.zeros(1000)
        self.nodes.append(helper.make_node("Gemm", [flat, "fc_w", "fc_b"], ["y"], name="fc", transB=1))
        return _model(self.nodes, [1, 3, 224, 224], self.inits, [1, 1000])


def _ternary(weight: np.ndarray, sparsity: float) -> np.ndarray:
    """``weight`` with its ``sparsity`` smallest magnitudes per output channel pruned and the rest
    ``alpha * sign``, ``alpha`` their mean magnitude."""
    rows = weight.reshape(weight.shape[0], -1)
    kept = np.abs(rows) >= np.quantile(np.abs(rows), sparsity, axis=1, keepdims=True)
    alpha = (np.abs(rows) * kept).sum(axis=1, keepdims=True) / np.maximum(kept.sum(axis=1, keepdims=True), 1)
    return (np.sign(rows) * kept * alpha).reshape(weight.shape)


def resnet18(sparsity: float | None = None, binary_act: bool = False) -> Layer:
    net = _Network(sparsity, binary_act)
    x = net.conv("x", 3, 64, 7, 2, act="relu")
    x = net.node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4)
    cin = 64
    for cout, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
        for block in range(2):
            s = stride if block == 0 else 1
            y = net.conv(net.conv(x, cin, cout, 3, s, act="relu"), cout, cout, 3)
            shortcut = net.conv(x, cin, cout, 1, s) if s != 1 or cin != cout else x
            x, cin = net.act(net.node("Add", [y, shortcut]), "relu"), cout
    variant = "" if sparsity is None else f", {'MPT-1/1' if binary_act else 'MPT-1/32'} ticket at {sparsity:.2f}"
    return Layer(f"resnet18 (whole network{variant})", net.classifier(x, 512))


def resnet50(sparsity: float | None = None, binary_act: bool = False) -> Layer:
    """Bottleneck blocks (1x1 -> 3x3 -> 1x1, x4 expansion), stride on the 3x3 and on a 1x1 shortcut."""
    net = _Network(sparsity, binary_act)
    x = net.conv("x", 3, 64, 7, 2, act="relu")
    x = net.node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4)
    cin = 64
    for width, blocks, stride in [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]:
        for block in range(blocks):
            s = stride if block == 0 else 1
            y = net.conv(net.conv(x, cin, width, 1, act="relu"), width, width, 3, s, act="relu")
            y = net.conv(y, width, 4 * width, 1)
            shortcut = net.conv(x, cin, 4 * width, 1, s) if s != 1 or cin != 4 * width else x
            x, cin = net.act(net.node("Add", [y, shortcut]), "relu"), 4 * width
    variant = "" if sparsity is None else f", {'MPT-1/1' if binary_act else 'MPT-1/32'} ticket at {sparsity:.2f}"
    return Layer(f"resnet50 (whole network{variant})", net.classifier(x, 2048))


def mobilenet_v2(sparsity: float | None = None) -> Layer:
    net = _Network(sparsity)
    x = net.conv("x", 3, 32, 3, 2, act="clip")
    cin = 32
    for expand, cout, repeats, stride in [
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ]:
        for block in range(repeats):
            s = stride if block == 0 else 1
            hidden = cin * expand
            y = net.conv(x, cin, hidden, 1, act="clip") if expand != 1 else x
            y = net.conv(net.conv(y, hidden, hidden, 3, s, groups=hidden, act="clip"), hidden, cout, 1)
            x, cin = (net.node("Add", [y, x]) if s == 1 and cin == cout else y), cout
    variant = "" if sparsity is None else f", MPT-1/32 ticket at {sparsity:.2f}"
    return Layer(f"mobilenet_v2 (whole network{variant})", net.classifier(net.conv(x, cin, 1280, 1, act="clip"), 1280))


def compile_layer(model: onnx.ModelProto, shape: list[int], pack: bool = False) -> relax.VirtualMachine:
    """``model`` through mptc's frontend and Relax pipeline for this host; with ``pack``, its ternary
    layers packed first (``mptc optimize``'s pipeline)."""
    target = resolve_target("x86")
    kernels = kernel_schedules(target)
    packed = optimize(model) if pack else model
    mod = from_onnx(packed, Lowering(kernels, default_policy("x86")), {"x": shape})
    return relax.VirtualMachine(build(mod, target, kernels.float_lanes), tvm.cpu())


def _calls_for(call: Callable[[], object]) -> int:
    """Calls in one timed batch: about ``TARGET_SECONDS`` of work, at least 1."""
    began = time.perf_counter()
    call()
    return max(1, int(TARGET_SECONDS / max(time.perf_counter() - began, 1e-6)))


def tvm_timer(vm: relax.VirtualMachine, x: np.ndarray, threads: int) -> Callable[[], float]:
    """Seconds per call of the compiled layer (median of a few batches) at ``threads``."""
    vm.set_input("main", tvm.runtime.tensor(x))
    pool = tvm.get_global_func("runtime.config_threadpool")
    pool(TVM_THREADPOOL_BIG_CORES, threads)
    vm.invoke_stateful("main")
    number = _calls_for(lambda: vm.invoke_stateful("main"))
    evaluator = vm.time_evaluator("invoke_stateful", tvm.cpu(), number=number, repeat=3)

    def timed() -> float:
        pool(TVM_THREADPOOL_BIG_CORES, threads)
        return evaluator("main").median

    return timed


def ort_timer(model: onnx.ModelProto, x: np.ndarray, threads: int) -> Callable[[], float]:
    """Seconds per call of onnxruntime's session (median of a few batches) at ``threads``."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feed = {"x": x}
    session.run(None, feed)
    number = _calls_for(lambda: session.run(None, feed))

    def timed() -> float:
        batches = []
        for _ in range(3):
            began = time.perf_counter()
            for _ in range(number):
                session.run(None, feed)
            batches.append((time.perf_counter() - began) / number)
        return statistics.median(batches)

    return timed


def check(vm: relax.VirtualMachine, model: onnx.ModelProto, x: np.ndarray) -> float:
    """Max abs error of the compiled layer vs onnxruntime, relative to the output's max."""
    got = vm["main"](tvm.runtime.tensor(x)).numpy()
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", default="", help="comma-separated substrings of layer names; empty: all")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--networks", action="store_true", help="also whole resnet18/50, mobilenet_v2 (BN folded)")
    parser.add_argument("--tickets", default="", help="sparsities of ternary tickets of both networks, e.g. 0.5,0.9")
    parser.add_argument("--binary-act", action="store_true", help="resnet18's tickets with binary activations")
    args = parser.parse_args()
    wanted = [w for w in args.layers.split(",") if w]
    chosen = [layer for layer in layers() if not wanted or any(w in layer.name for w in wanted)]
    if args.networks:
        chosen += [resnet18(), resnet50(), mobilenet_v2()]
    for sparsity in (float(v) for v in args.tickets.split(",") if v):
        chosen += [resnet18(sparsity, args.binary_act), resnet50(sparsity, args.binary_act)]
        chosen += [] if args.binary_act else [mobilenet_v2(sparsity)]
    threads = [int(t) for t in args.threads.split(",")]
    info = cpuinfo()
    print(f"host: {info.model}, {len(info.mhz)} cores; tvm {tvm.__version__}, onnxruntime {ort.__version__}")
    print(
        "| layer | threads | tvm us (median / min) | ort us (median / min) | ort / tvm (median of rounds) | ort / tvm (min) | max rel err |"
    )
    print("|---|---|---|---|---|---|---|")
    for layer in chosen:
        shape = layer.input_shape
        x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
        vm = compile_layer(layer.model, shape, pack="ticket" in layer.name)
        error = check(vm, layer.model, x)
        for n in threads:
            timers = {"tvm": tvm_timer(vm, x, n), "ort": ort_timer(layer.model, x, n)}
            samples = interleaved_rounds(timers, args.rounds)
            t, o = samples["tvm"], samples["ort"]
            ratio = median_ratio(o, t)
            print(
                f"| {layer.name} | {n} | {statistics.median(t) * 1e6:.0f} / {min(t) * 1e6:.0f} "
                f"| {statistics.median(o) * 1e6:.0f} / {min(o) * 1e6:.0f} | {ratio:.2f}x | {min(o) / min(t):.2f}x | {error:.1e} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
