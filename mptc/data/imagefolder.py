"""An ``ImageFolder`` tree (``DIR/train/<class>/*.png``, ``DIR/val/<class>/*``) through torchvision.

torchvision is optional: its only wheel here is a CUDA build that fails to import beside the CPU
torch, so it is imported lazily and a failure becomes a clear message.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mptc.data.base import Dataset, DataSplit
from mptc.errors import InputError, UnsupportedError

IMAGE_SIZE = 32


def _torchvision():
    try:
        import torchvision  # noqa: PLC0415
    except Exception as error:  # a CUDA-only wheel raises RuntimeError, not ImportError
        raise UnsupportedError(
            f"imagefolder data needs torchvision, which does not import here ({error}); "
            "install a torchvision build matching your torch (pip install 'mptc[vision]')"
        ) from error
    return torchvision


def _load_split(folder: Path) -> tuple[DataSplit, list[str]]:
    tv = _torchvision()
    transform = tv.transforms.Compose([tv.transforms.Resize((IMAGE_SIZE, IMAGE_SIZE)), tv.transforms.ToTensor()])
    data = tv.datasets.ImageFolder(str(folder), transform=transform)
    xs, ys = zip(*[data[i] for i in range(len(data))])
    x = torch.stack(xs)
    return DataSplit((x - 0.5) / 0.25, torch.tensor(ys)), data.classes


def load_imagefolder(folder: str | Path) -> Dataset:
    root = Path(folder)
    train_dir, test_dir = root / "train", root / "val"
    if not train_dir.is_dir() or not test_dir.is_dir():
        raise InputError(f"imagefolder {root} needs train/ and val/ subfolders with one folder per class")
    train, classes = _load_split(train_dir)
    test, _ = _load_split(test_dir)
    return Dataset(f"imagefolder:{folder}", train, test, (3, IMAGE_SIZE, IMAGE_SIZE), len(classes), augment=True)
