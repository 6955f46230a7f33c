"""Acceptance run: lottery jackpots in a dense pre-trained MLP on digits, against magnitude pruning.

Trains the dense MLP once, then searches 90%-sparse jackpots inside it (default recipe: SGD lr
0.1, wd 5e-4, 10 epochs, short restriction) and prunes it by magnitude at the same per-layer
counts. Prints and writes ``jackpot_digits.md`` / ``.json``; the claim checked is: jackpot at
most 1 point below the dense model and above magnitude pruning.

    .venv/bin/python examples/jackpot_digits.py --out runs/jackpot-digits
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import mptc.jackpot  # noqa: F401  (registers the jackpot methods' training hooks)
from mptc.config import TrainConfig
from mptc.train.loop import train

VARIANTS = {
    "jackpot": {},
    "jackpot, no restriction": {"restriction": False},
    "jackpot, dense classifier": {"dense_last": True},
    "jackpot --binarize (ternary)": {"binarize": True},
    "magnitude": {"method": "magnitude"},
    "magnitude, dense classifier": {"method": "magnitude", "dense_last": True},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/jackpot-digits"))
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    dense_dir = args.out / "dense"
    dense = train(
        TrainConfig(model="mlp", method="dense", seed=args.seed),
        dense_dir,
        resume=(dense_dir / "ticket.safetensors").exists(),
    )
    rows = [
        {
            "run": "dense (pre-trained)",
            "test_accuracy": dense.metrics["test_accuracy"],
            "sparsity": 0.0,
            "seconds": dense.metrics["train_seconds"],
        }
    ]
    for name, changes in VARIANTS.items():
        config = TrainConfig(
            **{
                "model": "mlp",
                "method": "jackpot",
                "sparsity": args.sparsity,
                "pretrained": str(dense_dir),
                "seed": args.seed,
                **changes,
            }
        )
        run_dir = args.out / name.replace(" ", "_").replace(",", "").replace("(", "").replace(")", "")
        result = train(
            config, run_dir, resume=(run_dir / "ticket.safetensors").exists() or (run_dir / "checkpoint.pt").exists()
        )
        report = result.metrics["jackpot"]
        rows.append(
            {
                "run": name,
                "test_accuracy": result.metrics["test_accuracy"],
                "sparsity": result.metrics["sparsity"],
                "magnitude_test_accuracy": report["magnitude_test_accuracy"],
                "magnitude_recalibrated_test_accuracy": report["magnitude_recalibrated_test_accuracy"],
                "mask_overlap": report["mask_overlap"],
                "epochs": result.metrics["epochs"],
                "seconds": result.metrics["train_seconds"],
            }
        )
    lines = [
        "| run | sparsity | test acc | magnitude at same counts | magnitude, BN re-estimated | mask overlap | epochs | s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['run']} | {r['sparsity']:.3f} | {r['test_accuracy']:.4f} | {r.get('magnitude_test_accuracy', float('nan')):.4f} | "
            f"{r.get('magnitude_recalibrated_test_accuracy', float('nan')):.4f} | "
            f"{r.get('mask_overlap', float('nan')):.3f} | {r.get('epochs', '')} | {r['seconds']:.1f} |"
        )
    jackpot, magnitude = (
        rows[1]["test_accuracy"],
        max(rows[5]["test_accuracy"], rows[5]["magnitude_recalibrated_test_accuracy"]),
    )
    verdict = (
        f"jackpot {jackpot:.4f} vs dense {rows[0]['test_accuracy']:.4f} (gap {100 * (rows[0]['test_accuracy'] - jackpot):.2f} points, "
        f"must be <= 1) and vs the better magnitude baseline {magnitude:.4f} (must be below): "
        f"{'PASS' if rows[0]['test_accuracy'] - jackpot <= 0.01 and jackpot > magnitude else 'FAIL'}"
    )
    text = "\n".join(lines) + "\n\n" + verdict + "\n"
    (args.out / "jackpot_digits.md").write_text(text)
    (args.out / "jackpot_digits.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()
