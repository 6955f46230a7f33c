import json

import pytest
import torch

from mptc.data import load_dataset
from mptc.errors import InputError
from mptc.ticket import load_ticket


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


def test_ticket_with_wrong_seed_is_detected(tiny_run, tmp_path):
    raw = (tiny_run.run_dir / "ticket.safetensors").read_bytes()
    header_len = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + header_len])
    config = json.loads(header["__metadata__"]["config"])
    config["seed"] += 1
    header["__metadata__"]["config"] = json.dumps(config)
    new_header = json.dumps(header).encode()
    new_header += b" " * (-len(new_header) % 8)
    (tmp_path / "t.safetensors").write_bytes(len(new_header).to_bytes(8, "little") + new_header + raw[8 + header_len :])
    with pytest.raises(InputError, match="alpha does not match"):
        load_ticket(tmp_path / "t.safetensors")


def test_missing_ticket(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_ticket(tmp_path / "none.safetensors")
