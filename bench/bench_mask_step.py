"""Training step time of masked layers against the same dense layers (forward + backward + step).

The mask is an exact top-k of |scores| by radix select each step (``mptc.nn.estimators``); the
reference implementations sort every layer every step and are many times slower than dense
training. Target: <= 2x. Results: ``docs/performance.md``, "Mask cost".
Method: the same shapes, data and optimizer side by side in one process, interleaved, median
of many steps (the machine is shared and noisy: read the ratio, not the absolute times).

    .venv/bin/python bench/bench_mask_step.py [--threads 1] [--steps 30]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from mptc.models import LayerRecipe, build_model
from mptc.nn.init import initialize

CASES = {
    "mlp 64-512-512-10, batch 64": ("mlp", (1, 8, 8), 64, 1.0),
    "conv4 1x 16x16, batch 32": ("conv4", (3, 16, 16), 32, 1.0),
    "resnet18 0.25x 32x32, batch 32": ("resnet18", (3, 32, 32), 32, 0.25),
}
METHODS = {
    "dense": dict(method="dense"),
    "edge-popup": dict(method="edge-popup"),
    "biprop": dict(method="biprop"),
    "biprop 1/1": dict(method="biprop", binary_act=True),
}


def step_timer(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)

    def step() -> float:
        began = time.perf_counter()
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - began

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"| case | {' | '.join(METHODS)} | worst masked/dense |")
    print(f"|---|{'---|' * len(METHODS)}---|")
    for case, (name, shape, batch, width) in CASES.items():
        x, y = torch.randn(batch, *shape), torch.randint(0, 10, (batch,))
        steps = {}
        for label, kwargs in METHODS.items():
            model = build_model(name, LayerRecipe(sparsity=0.5, width=width, **kwargs), shape, 10)
            initialize(model, 0, "kaiming-normal")
            steps[label] = step_timer(model.train(), x, y)
            for _ in range(3):
                steps[label]()
        times: dict[str, list[float]] = {label: [] for label in METHODS}
        for _ in range(args.steps):  # interleaved, so drift hits every method alike
            for label, step in steps.items():
                times[label].append(step())
        medians = {label: statistics.median(t) * 1e3 for label, t in times.items()}
        worst = max(medians[m] for m in METHODS if m != "dense") / medians["dense"]
        cells = " | ".join(
            f"{medians[m]:.2f} ms" + ("" if m == "dense" else f" ({medians[m] / medians['dense']:.2f}x)")
            for m in METHODS
        )
        print(f"| {case} | {cells} | {worst:.2f}x |")


if __name__ == "__main__":
    main()
