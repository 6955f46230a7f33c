import pytest
import torch

from mptc.errors import InputError
from mptc.train.checkpoint import load_checkpoint, save_checkpoint


def test_round_trip(tmp_path):
    save_checkpoint(tmp_path / "c.pt", {"epoch": 2, "model": {"w": torch.ones(3)}, "history": [{"a": 1.0}]})
    state = load_checkpoint(tmp_path / "c.pt")
    assert state["epoch"] == 2 and torch.equal(state["model"]["w"], torch.ones(3))


def test_pickled_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"epoch": 1, "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(InputError, match="refusing to unpickle"):
        load_checkpoint(tmp_path / "evil.pt")


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    save_checkpoint(tmp_path / "c.pt", {"epoch": 2, "model": {"w": torch.ones(1000)}})
    data = (tmp_path / "c.pt").read_bytes()
    (tmp_path / "c.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="corrupt or truncated"):
        load_checkpoint(tmp_path / "c.pt")


def test_missing_checkpoint(tmp_path):
    with pytest.raises(InputError, match="nothing to resume"):
        load_checkpoint(tmp_path / "none.pt")
