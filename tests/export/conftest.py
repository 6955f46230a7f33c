"""Random-weight tickets of every family, exported once per session (export is the slow part)."""

from __future__ import annotations

import pytest

from mptc.config import TrainConfig
from mptc.data import load_dataset
from mptc.export import export_model
from mptc.train.loop import build

FAMILIES = {
    "mlp": "digits",
    "conv4": "synthetic:3x16x16",
    "vgg-small": "synthetic:3x16x16",
    "resnet18": "synthetic:3x16x16",
}
METHODS = {
    "edge-popup": dict(method="edge-popup", init="signed-constant"),
    "biprop": dict(method="biprop", init="kaiming-normal"),
    "biprop-1-1": dict(method="biprop", binary_act=True, init="kaiming-normal"),
    "dense": dict(method="dense", init="kaiming-normal"),
}


def make_ticket(family: str, method: str, sparsity: float = 0.7, width: float = 0.125):
    config = TrainConfig(
        model=family, dataset=FAMILIES[family], sparsity=sparsity, width=width, seed=3, **METHODS[method]
    )
    dataset = load_dataset(config.dataset)
    model = build(config, dataset)
    for layer in model.modules():  # random scores are a valid (untrained) ticket; give BN real statistics
        if hasattr(layer, "running_var"):
            layer.running_mean.uniform_(-0.2, 0.2)
            layer.running_var.uniform_(0.5, 2.0)
    return model.eval(), config, dataset


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """``exported(family, method)`` -> (model, config, dataset, report), cached."""
    cache: dict = {}
    folder = tmp_path_factory.mktemp("exports")

    def get(family: str, method: str):
        if (family, method) not in cache:
            model, config, dataset = make_ticket(family, method)
            report = export_model(model, config, dataset, folder / f"{family}-{method}.onnx")
            cache[family, method] = (model, config, dataset, report)
        return cache[family, method]

    return get
