"""A user's model by import path: resolving, seeded construction, recording a factory's path."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from mptc.config import is_import_path
from mptc.errors import InputError
from mptc.models.user import import_path_of, instantiate, resolve_factory
from tests.models.user_nets import TinyResNet, tiny_resnet

PATH = "tests.models.user_nets:TinyResNet"


@pytest.mark.parametrize(
    ("text", "expected"),
    [(PATH, True), ("torchvision.models:resnet18", True), ("pkg.mod:Outer.build", True), ("resnet18", False)]
    + [("pkg.mod:", False), ("pkg..mod:Net", False), ("pkg.mod:Net()", False)],
)
def test_import_paths_are_told_from_zoo_names(text, expected):
    assert is_import_path(text) is expected


def test_classes_and_functions_resolve():
    assert resolve_factory(PATH) is TinyResNet
    assert resolve_factory("tests.models.user_nets:tiny_resnet") is tiny_resnet


@pytest.mark.parametrize(
    ("path", "match"),
    [
        ("tests.models.no_such_module:Net", "cannot import"),
        ("tests.models.user_nets:NoSuchNet", "has no attribute"),
        ("os:system", "standard-library"),
        ("tests.models.user_nets:ACTIVATIONS", "not an nn.Module subclass or a function"),
        ("mlp", "neither a zoo model nor an import path"),
    ],
)
def test_what_is_no_model_factory_is_refused(path, match):
    with pytest.raises(InputError, match=match):
        resolve_factory(path)


def test_construction_is_seeded_and_leaves_the_global_rng_alone():
    state = torch.get_rng_state()
    a, b = instantiate(PATH, {"width": 4}, seed=1), instantiate(PATH, {"width": 4}, seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    c = instantiate(PATH, {"width": 4}, seed=2)
    assert not torch.equal(a.fc.weight, c.fc.weight)


def test_a_failing_constructor_or_a_non_module_result_is_an_input_error():
    with pytest.raises(InputError, match="unexpected keyword"):
        instantiate(PATH, {"depth": 3}, seed=0)
    with pytest.raises(InputError, match="returned a str, not an nn.Module"):
        instantiate("tests.models.user_nets:not_a_model", {}, seed=0)


def test_factories_record_their_import_path():
    assert import_path_of(TinyResNet) == PATH
    assert import_path_of(tiny_resnet) == "tests.models.user_nets:tiny_resnet"

    def local_factory() -> torch.nn.Module:
        return TinyResNet()

    with pytest.raises(InputError, match="not importable by name"):
        import_path_of(local_factory)


def test_a_script_s_own_model_is_recorded_under_the_script_s_module_name(tmp_path):
    script = tmp_path / "my_script.py"
    script.write_text(
        textwrap.dedent(
            """
            from torch import nn
            from mptc.models.user import import_path_of, resolve_factory

            class Net(nn.Module):
                pass

            if __name__ == "__main__":
                path = import_path_of(Net)
                print(path, resolve_factory(path).__name__)
            """
        )
    )
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["my_script:Net", "Net"]
