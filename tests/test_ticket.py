import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from mptc.data import load_dataset
from mptc.errors import InputError, MptcError
from mptc.ticket import load_ticket, save_ticket, ticket_signature


def test_ticket_reloads_bit_exactly(tiny_run):
    model, config = load_ticket(tiny_run.run_dir / "ticket.safetensors")
    x = load_dataset("digits").test.x[:64]
    tiny_run.model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), tiny_run.model(x))
    assert config == tiny_run.config


def test_ticket_is_small(tiny_run):
    metrics = tiny_run.metrics
    # masks are 1 bit per weight; weights themselves are not stored (regenerated from the seed)
    assert metrics["ticket_bytes"] < metrics["fp32_bytes"] / 15


def test_truncated_ticket_is_a_clear_error(tiny_run, tmp_path):
    data = (tiny_run.run_dir / "ticket.safetensors").read_bytes()
    (tmp_path / "t.safetensors").write_bytes(data[: len(data) - 100])
    with pytest.raises(InputError, match="corrupt or truncated"):
        load_ticket(tmp_path / "t.safetensors")


def _with_config(ticket: bytes, change: dict) -> bytes:
    """The ticket's bytes with ``change`` applied to the config in its metadata."""
    header_len = int.from_bytes(ticket[:8], "little")
    header = json.loads(ticket[8 : 8 + header_len])
    config = json.loads(header["__metadata__"]["config"])
    header["__metadata__"]["config"] = json.dumps({**config, **change})
    new_header = json.dumps(header).encode()
    new_header += b" " * (-len(new_header) % 8)
    return len(new_header).to_bytes(8, "little") + new_header + ticket[8 + header_len :]


def test_ticket_with_wrong_seed_is_detected(tiny_run, tmp_path):
    raw = (tiny_run.run_dir / "ticket.safetensors").read_bytes()
    (tmp_path / "t.safetensors").write_bytes(_with_config(raw, {"seed": tiny_run.config.seed + 1}))
    with pytest.raises(InputError, match="alpha does not match"):
        load_ticket(tmp_path / "t.safetensors")


def test_ticket_loads_without_its_training_data(tiny_run, tmp_path):
    raw = (tiny_run.run_dir / "ticket.safetensors").read_bytes()
    (tmp_path / "t.safetensors").write_bytes(_with_config(raw, {"dataset": "cifar10:/data/not/here"}))
    model, config = load_ticket(tmp_path / "t.safetensors")
    assert config.dataset == "cifar10:/data/not/here"
    x = load_dataset("digits").test.x[:16]
    with torch.no_grad():
        assert torch.equal(model(x), tiny_run.model.eval()(x))
    assert ticket_signature(tmp_path / "t.safetensors") == ((1, 8, 8), 10)


def test_missing_ticket(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_ticket(tmp_path / "none.safetensors")


def test_the_same_ticket_is_the_same_bytes(tiny_run, tmp_path):
    # safetensors writes metadata from a hash map whose order changes from one save to the next
    model, config = load_ticket(tiny_run.run_dir / "ticket.safetensors")
    saved = []
    for i in range(6):
        save_ticket(model, config, tmp_path / f"{i}.safetensors", input_shape=(1, 8, 8), num_classes=10)
        saved.append((tmp_path / f"{i}.safetensors").read_bytes())
    assert all(data == saved[0] for data in saved)
    reloaded, reloaded_config = load_ticket(tmp_path / "0.safetensors")
    assert reloaded_config == config and ticket_signature(tmp_path / "0.safetensors") == ((1, 8, 8), 10)


def _with_metadata(ticket: bytes, change: dict) -> bytes:
    """The ticket's bytes with ``change`` applied to its metadata."""
    header_len = int.from_bytes(ticket[:8], "little")
    header = json.loads(ticket[8 : 8 + header_len])
    header["__metadata__"].update(change)
    new_header = json.dumps(header).encode()
    new_header += b" " * (-len(new_header) % 8)
    return len(new_header).to_bytes(8, "little") + new_header + ticket[8 + header_len :]


@pytest.mark.parametrize(
    "change",
    [
        {"input_shape": "[100000, 100000]"},
        {"input_shape": "[1, 0, 8]"},
        {"num_classes": "10000000000"},
        {"num_classes": "0"},
    ],
)
def test_a_ticket_that_would_allocate_an_impossible_model_is_refused(tiny_run, tmp_path, change):
    raw = (tiny_run.run_dir / "ticket.safetensors").read_bytes()
    (tmp_path / "t.safetensors").write_bytes(_with_metadata(raw, change))
    with pytest.raises(InputError, match="impossible input shape"):
        load_ticket(tmp_path / "t.safetensors")


@pytest.mark.parametrize("width", [1e9, float("inf")])
def test_a_ticket_whose_width_is_out_of_range_is_refused(tiny_run, tmp_path, width):
    raw = (tiny_run.run_dir / "ticket.safetensors").read_bytes()
    (tmp_path / "t.safetensors").write_bytes(_with_config(raw, {"width": width}))
    with pytest.raises(MptcError, match="--width must be"):
        load_ticket(tmp_path / "t.safetensors")


@pytest.mark.parametrize(
    "suffix, dtype", [(".alpha", torch.int64), (".alpha", torch.float64), (".mask_bits", torch.int32)]
)
def test_ticket_tensors_of_the_wrong_dtype_are_refused(tiny_run, tmp_path, suffix, dtype):
    tensors = load_file(tiny_run.run_dir / "ticket.safetensors")
    raw = (tiny_run.run_dir / "ticket.safetensors").read_bytes()
    metadata = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])["__metadata__"]
    key = next(k for k in tensors if k.endswith(suffix))
    tensors[key] = tensors[key].to(dtype)
    save_file(tensors, tmp_path / "t.safetensors", metadata=metadata)
    with pytest.raises(InputError, match=f"{key} is {dtype}"):
        load_ticket(tmp_path / "t.safetensors")
