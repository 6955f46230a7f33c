"""Data sets by name: ``digits`` (default), ``synthetic[:CxHxW]``, ``cifar10:DIR``, ``imagefolder:DIR``.

Nothing is downloaded at run time: digits ship with scikit-learn, the rest are local files.
"""

from __future__ import annotations

import math

from mptc.config import DATASETS
from mptc.data.base import Dataset, DataSplit, augment_batch
from mptc.errors import InputError

MAX_SYNTHETIC_VALUES = 2**20  # per sample: 768 samples of float32 stay within 3 GiB


def parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(part) for part in text.lower().replace(",", "x").split("x"))
    except ValueError as error:
        raise InputError(f"bad synthetic shape {text!r}; write it as CxHxW, e.g. synthetic:3x32x32") from error
    if not shape or min(shape) <= 0:
        raise InputError(f"bad synthetic shape {text!r}; every dimension must be positive")
    if math.prod(shape) > MAX_SYNTHETIC_VALUES:
        raise InputError(
            f"synthetic shape {text!r} has {math.prod(shape):,} values per sample, more than the "
            f"{MAX_SYNTHETIC_VALUES:,} a generated data set holds (768 samples of them are made)"
        )
    return shape


def load_dataset(spec: str) -> Dataset:
    """Load the data set named by ``spec`` (see :data:`DATASETS`)."""
    kind, _, argument = spec.partition(":")
    if kind == "digits" and not argument:
        from mptc.data.digits import load_digits

        return load_digits()
    if kind == "synthetic":
        from mptc.data.synthetic import DEFAULT_SHAPE, load_synthetic

        return load_synthetic(parse_shape(argument) if argument else DEFAULT_SHAPE)
    if kind == "cifar10" and argument:
        from mptc.data.cifar import load_cifar10

        return load_cifar10(argument)
    if kind == "imagefolder" and argument:
        from mptc.data.imagefolder import load_imagefolder

        return load_imagefolder(argument)
    raise InputError(f"unknown dataset {spec!r}; expected one of {', '.join(DATASETS)}")


__all__ = ["DATASETS", "DataSplit", "Dataset", "augment_batch", "load_dataset"]
