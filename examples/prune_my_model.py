"""Your own PyTorch model, pruned with biprop (MPT-1/32), trained, compiled for x86 and checked.

``SmallResNet`` below is an ordinary ``nn.Module`` written for this example, not one of mptc's
zoo models. The script:

1. shows what ``mptc.prune`` does to it (every Conv2d/Linear becomes a masked ternary layer);
2. trains a ticket with ``mptc.train`` (by the model's import path, ``prune_my_model:SmallResNet``,
   which the ticket records so every later stage can rebuild the model) on scikit-learn's digits;
3. exports it to ONNX, packs its ternary layers into ``ai.mptc`` bit operators, compiles the
   packed model with TVM for this x86 host;
4. runs the compiled module on the test images and compares its output with PyTorch's.

    .venv/bin/python examples/prune_my_model.py --out runs/prune-my-model
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

import mptc


class BasicBlock(nn.Module):
    """``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class SmallResNet(nn.Module):
    """A ResNet for 8x8 grey images: a stem, three blocks, global pooling, a linear classifier."""

    def __init__(self, width: int = 16, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.blocks = nn.Sequential(
            BasicBlock(width, width, 1), BasicBlock(width, 2 * width, 2), BasicBlock(2 * width, 2 * width, 1)
        )
        self.classifier = nn.Linear(2 * width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        features = self.blocks(self.stem(x)).mean(dim=(2, 3))
        return self.classifier(features)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/prune-my-model"))
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--sparsity", type=float, default=0.5, help="fraction of weights pruned per layer")
    args = parser.parse_args()
    torch.set_num_threads(2)

    preview = mptc.prune(SmallResNet(), method="biprop", sparsity=args.sparsity)
    print(f"mptc.prune masks {len(preview.masked)} layers: {', '.join(preview.masked)}")

    run = args.out / "run"
    result = mptc.train(
        SmallResNet,  # recorded as prune_my_model:SmallResNet
        out=run,
        resume=(run / "checkpoint.pt").exists(),
        method="biprop",
        sparsity=args.sparsity,
        dataset="digits",
        epochs=args.epochs,
        model_args={"width": 16},
    )
    print(f"trained {result.config.model}: test accuracy {result.metrics['test_accuracy']:.3f}")

    exported = mptc.export(run, args.out / "model.onnx")
    packed = mptc.optimize(exported.path, args.out / "packed.onnx")
    manifest = mptc.compile(packed.path, target="x86", out=args.out / "x86")
    print(f"packed {len(packed.packed_layers)} layers; compiled {manifest.sizes.module_bytes:,} bytes")

    from mptc.data import load_dataset
    from mptc.export.freeze import freeze
    from mptc.pipeline import module_logits

    model, _ = mptc.load_ticket(run)
    test = load_dataset("digits").test
    batch = manifest.input.shape[0]
    logits = module_logits(args.out / "x86" / "module.so", test.x.numpy(), batch)
    with torch.no_grad():
        reference = freeze(model)(test.x[: len(logits)]).numpy()
    max_diff = float(np.abs(logits - reference).max())
    agreement = float((logits.argmax(1) == reference.argmax(1)).mean())
    accuracy = float((logits.argmax(1) == test.y.numpy()[: len(logits)]).mean())
    print(f"compiled module vs PyTorch: max abs diff {max_diff:.2e}, argmax agreement {agreement:.1%}")
    print(f"compiled module test accuracy {accuracy:.3f} on {len(logits)} images")
    if max_diff > 1e-3 * max(float(np.abs(reference).max()), 1.0) or agreement < 1.0:
        sys.exit("the compiled module does not compute what PyTorch computes")


if __name__ == "__main__":
    main()
