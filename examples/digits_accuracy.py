"""The README's accuracy table: strong lottery tickets on scikit-learn digits with the defaults.

Each row is one `mptc train` run with the defaults a user gets (only the flags shown), on the
fixed stratified test split (360 images). Not a timed test: wall time depends on the machine.

    .venv/bin/python examples/digits_accuracy.py [--out runs/digits-table] [--seeds 0]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from mptc.config import TrainConfig
from mptc.train.loop import train

ROWS = {
    "--method dense (baseline)": TrainConfig(method="dense"),
    "--method edge-popup --sparsity 0.5": TrainConfig(method="edge-popup", sparsity=0.5),
    "--method biprop --sparsity 0.5 (MPT-1/32)": TrainConfig(method="biprop", sparsity=0.5),
    "--method biprop --sparsity 0.5 --binary-act (MPT-1/1)": TrainConfig(
        method="biprop", sparsity=0.5, binary_act=True
    ),
    "--method biprop --sparsity 0.9 (MPT-1/32)": TrainConfig(method="biprop", sparsity=0.9),
    "--method biprop --sparsity 0.9 --binary-act (MPT-1/1)": TrainConfig(
        method="biprop", sparsity=0.9, binary_act=True
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/digits-table"))
    parser.add_argument("--seeds", default="0", help="comma-separated seeds; the table shows each")
    args = parser.parse_args()
    print("| `mptc train --model mlp` ... | seed | test accuracy | sparsity | ticket bytes | fp32 bytes | train time |")
    print("|---|---|---|---|---|---|---|")
    for label, config in ROWS.items():
        for seed in (int(s) for s in args.seeds.split(",")):
            run_dir = args.out / f"{label.split('(')[0].strip().replace(' ', '').replace('--', '_')}-s{seed}"
            shutil.rmtree(run_dir, ignore_errors=True)
            metrics = train(TrainConfig(**{**config.to_json(), "seed": seed}), run_dir).metrics
            print(
                f"| {label} | {seed} | {metrics['test_accuracy']:.2%} | {metrics['sparsity']:.2f} | "
                f"{metrics['ticket_bytes']:,} | {metrics['fp32_bytes']:,} | {metrics['train_seconds']:.0f} s |",
                flush=True,
            )


if __name__ == "__main__":
    main()
