"""An ``ImageFolder`` tree (``DIR/train/<class>/*.jpg``, ``DIR/val/<class>/*``), read with Pillow.

Every image goes through the standard ImageNet evaluation transform, as torchvision's
``Resize(256)``, ``CenterCrop(224)``, ``ToTensor()``, ``Normalize(mean, std)``:

1. convert to RGB (grayscale, palette and RGBA images included);
2. resize (bilinear) so the shorter side is :data:`RESIZE` = 256 pixels and the longer one
   ``int(256 * long / short)``;
3. crop the central :data:`CROP` x :data:`CROP` = 224 x 224 pixels, the top-left corner at
   ``round((h - 224) / 2), round((w - 224) / 2)``;
4. scale to [0, 1] and normalise per channel with the ImageNet mean (0.485, 0.456, 0.406) and
   standard deviation (0.229, 0.224, 0.225).

Classes are the sub-folders of ``train/`` in sorted order (their index is the label); ``val/``
may hold a subset of them. Files are taken in sorted order, by extension (:data:`EXTENSIONS`).
Training adds the random shifts and flips of :func:`mptc.data.augment_batch`.

The images are held in memory as float32, 602 kB each: this suits folders of thousands of
images (a subset of ImageNet, a fine-tuning set), not ImageNet itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mptc.data.base import Dataset, DataSplit
from mptc.errors import InputError

RESIZE, CROP = 256, 224
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32).reshape(3, 1, 1)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32).reshape(3, 1, 1)
EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")


def imagenet_transform(path: Path) -> np.ndarray:
    """The image at ``path`` as a normalised ``(3, 224, 224)`` float32 array (see the module doc).

    Raises:
        InputError: Pillow cannot read the file.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            image = opened.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise InputError(f"cannot read image {path}: {error}") from error
    width, height = image.size
    short, long = min(width, height), max(width, height)
    new_long = int(RESIZE * long / short)
    size = (RESIZE, new_long) if width <= height else (new_long, RESIZE)
    if size != image.size:
        image = image.resize(size, Image.Resampling.BILINEAR)
    width, height = image.size
    top, left = int(round((height - CROP) / 2.0)), int(round((width - CROP) / 2.0))
    image = image.crop((left, top, left + CROP, top + CROP))
    pixels = np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0
    return (pixels - IMAGENET_MEAN) / IMAGENET_STD


def _files(folder: Path, classes: list[str]) -> list[tuple[Path, int]]:
    labels = {name: index for index, name in enumerate(classes)}
    found = []
    for class_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        if class_dir.name not in labels:
            raise InputError(f"{class_dir} is a class that {folder.parent / 'train'} does not have")
        for path in sorted(class_dir.iterdir()):
            if path.is_file() and path.suffix.lower() in EXTENSIONS:
                found.append((path, labels[class_dir.name]))
    if not found:
        raise InputError(f"{folder} holds no images ({', '.join(EXTENSIONS)}) in its class folders")
    return found


def _load_split(folder: Path, classes: list[str]) -> DataSplit:
    files = _files(folder, classes)
    x = np.stack([imagenet_transform(path) for path, _ in files])
    return DataSplit(torch.from_numpy(x), torch.tensor([label for _, label in files], dtype=torch.int64))


def load_imagefolder(folder: str | Path) -> Dataset:
    """``folder``'s ``train/`` and ``val/`` splits, ImageNet-transformed (see the module doc).

    Raises:
        InputError: no ``train/`` or ``val/``, no class folders or images, a ``val/`` class
            missing from ``train/``, or an unreadable image.
    """
    root = Path(folder)
    train_dir, test_dir = root / "train", root / "val"
    if not train_dir.is_dir() or not test_dir.is_dir():
        raise InputError(f"imagefolder {root} needs train/ and val/ subfolders with one folder per class")
    classes = sorted(p.name for p in train_dir.iterdir() if p.is_dir())
    if not classes:
        raise InputError(f"imagefolder {train_dir} has no class folders")
    train, test = _load_split(train_dir, classes), _load_split(test_dir, classes)
    return Dataset(f"imagefolder:{folder}", train, test, (3, CROP, CROP), len(classes), augment=True)
