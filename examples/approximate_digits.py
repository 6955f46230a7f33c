"""Acceptance run: tickets in random +-1 networks approximating a trained dense MLP on digits.

Trains a quarter-width dense MLP ([64, 128, 128, 10]) as the target, then sweeps the width of
the random +-1 network by both routes of ``mptc approximate``: the constructive one (integer
form at 8 bits, 3F copies per lane) and distillation (student F x wider). Writes each route's
``approximation.{json,md,png}``; the claim checked is argmax agreement >= 95% on the test split
with the error falling as width grows.

    .venv/bin/python examples/approximate_digits.py --out runs/approximate-digits
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from mptc.approximate import ApproximateConfig, approximate
from mptc.approximate.sweep import markdown_table
from mptc.config import TrainConfig
from mptc.train.loop import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/approximate-digits"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    target = args.out / "target"
    if not (target / "ticket.safetensors").exists():
        train(TrainConfig(model="mlp", method="dense", width=0.25, seed=0), target)
    sweeps = {
        "construct": ApproximateConfig(route="construct", width_factors=(1.0, 2.0, 4.0, 8.0), precision=8),
        "distill": ApproximateConfig(route="distill", width_factors=(0.25, 0.5, 1.0, 2.0, 4.0), epochs=20),
    }
    for name, config in sweeps.items():
        report = approximate(target, config, args.out / name)
        rows = report["rows"]
        errors = [r["mean_distance"] for r in rows]
        best = max(r["argmax_agreement"] for r in rows)
        print(f"## {name} route\n")
        print(markdown_table(rows, report["target_test_accuracy"], config))
        falling = all(b <= a for a, b in zip(errors, errors[1:]))
        print(
            f"best argmax agreement {best:.4f} (>= 0.95: {'PASS' if best >= 0.95 else 'FAIL'}); "
            f"mean error falls with width: {'PASS' if falling else 'FAIL'}\n"
        )


if __name__ == "__main__":
    main()
