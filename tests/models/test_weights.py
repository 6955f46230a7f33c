"""Pre-trained weights: safe reading, content hash, loading onto a converted model."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from mptc.errors import InputError
from mptc.models.convert import convert
from mptc.models.factory import LayerRecipe
from mptc.models.weights import load_weights, read_state_dict, state_sha256
from tests.models.user_nets import TinyResNet


@pytest.fixture
def state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {key: value.clone() for key, value in TinyResNet().state_dict().items()}


def test_the_hash_is_of_the_content_not_of_the_file(tmp_path, state):
    save_file(state, tmp_path / "w.safetensors")
    torch.save(dict(reversed(list(state.items()))), tmp_path / "w.pt")
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "checkpoint.pt")
    hashes = {state_sha256(read_state_dict(tmp_path / name)) for name in ("w.safetensors", "w.pt", "checkpoint.pt")}
    assert hashes == {state_sha256(state)}


def test_any_change_of_a_value_a_name_or_a_dtype_changes_the_hash(state):
    reference = state_sha256(state)
    changed = dict(state)
    changed["fc.bias"] = state["fc.bias"].clone()
    changed["fc.bias"][0] += 1e-6
    renamed = {("head" + key[2:] if key.startswith("fc") else key): value for key, value in state.items()}
    doubled = {key: value.double() if value.is_floating_point() else value for key, value in state.items()}
    assert len({reference, state_sha256(changed), state_sha256(renamed), state_sha256(doubled)}) == 4


class Payload:
    def __reduce__(self):
        return (print, ("pickled code ran",))


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ({"w": Payload()}, "refusing to unpickle code"),
        ([torch.zeros(2)], "not a state dict"),
    ],
)
def test_pickled_code_and_non_state_dicts_are_refused(tmp_path, content, match, capsys):
    torch.save(content, tmp_path / "bad.pt")
    with pytest.raises(InputError, match=match):
        read_state_dict(tmp_path / "bad.pt")
    assert "pickled code ran" not in capsys.readouterr().out


def test_missing_and_corrupt_files_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="do not exist"):
        read_state_dict(tmp_path / "none.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(InputError, match="not a readable safetensors"):
        read_state_dict(tmp_path / "bad.safetensors")


def test_an_unpruned_state_dict_loads_onto_the_converted_model(state):
    model = TinyResNet()
    convert(model, LayerRecipe(method="biprop"))
    load_weights(model, state, "w.safetensors")
    assert torch.equal(model.layer2.conv1.weight, state["layer2.conv1.weight"])
    assert torch.equal(model.fc.bias, state["fc.bias"])


def test_a_state_dict_of_another_model_is_refused_with_the_first_mismatches(state):
    model = TinyResNet(width=4)
    convert(model, LayerRecipe(method="biprop"))
    with pytest.raises(InputError, match=r"w\.pt does not fit the model: stem\.0\.weight has shape"):
        load_weights(model, state, "w.pt")
