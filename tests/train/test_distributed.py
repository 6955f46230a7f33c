"""Multi-process training (mptc/train/distributed.py): sharding, the mask check, and a real
two-process gloo run under ``torchrun`` against the same run in one process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mptc.config import TrainConfig, parse_config
from mptc.data import DataSplit
from mptc.errors import UnsupportedError, VerificationError
from mptc.ticket import load_ticket
from mptc.train.checkpoint import load_checkpoint
from mptc.train.distributed import World, join

CPU = torch.device("cpu")
BIN = Path(sys.executable).parent
TRAIN = ["train", "--width", "0.25", "--epochs", "6", "--seed", "3"]


def split(n: int) -> DataSplit:
    return DataSplit(torch.arange(n, dtype=torch.float32)[:, None], torch.arange(n))


@pytest.mark.parametrize("n, size", [(10, 2), (11, 2), (13, 4), (12, 3)])
def test_shards_cover_the_epoch_order_like_distributed_sampler(n, size):
    """Rank r takes order[r::size] of the order padded by wrapping; together, every sample."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(5))
    shards = []
    for rank in range(size):
        batches = list(World(CPU, rank, size).batches(split(n), 2 * size, torch.Generator().manual_seed(5)))
        assert all(len(y) <= 2 for _, y in batches)  # each rank steps on batch_size / size samples
        shards.append(torch.cat([y for _, y in batches]))
    padded = torch.cat([order, order[: -n % size]])
    for rank, shard in enumerate(shards):
        assert torch.equal(shard, padded[rank::size])
    assert set(torch.cat(shards).tolist()) == set(range(n))
    assert len({len(shard) for shard in shards}) == 1  # equal steps on every rank: no hang


def test_alone_is_the_single_process_order():
    world = join(CPU)
    assert (world.rank, world.size, world.is_main) == (0, 1, True)
    alone = list(world.batches(split(9), 4, torch.Generator().manual_seed(1)))
    plain = list(split(9).batches(4, torch.Generator().manual_seed(1)))
    assert all(torch.equal(a[1], b[1]) for a, b in zip(alone, plain, strict=True))


def test_a_batch_that_does_not_split_is_refused():
    with pytest.raises(UnsupportedError, match="does not split evenly over 3 processes"):
        World(CPU, 0, 3).batches(split(9), 64, torch.Generator())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _check_masks(rank: int, size: int, port: int, tamper: bool, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(size))
    from mptc.data import load_dataset
    from mptc.train.loop import build

    world = join(CPU)
    model = build(TrainConfig(width=0.25, seed=1), load_dataset("synthetic:1x4x4"))
    if tamper and rank == 1:
        layer = next(m for m in model.modules() if hasattr(m, "scores"))
        with torch.no_grad():
            layer.scores.copy_(layer.scores.flatten().roll(1).reshape(layer.scores.shape))
    try:
        world.check_masks_agree(model)
        results[rank] = "agree"
    except VerificationError as error:
        results[rank] = str(error)
    dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("tamper", [False, True])
def test_mask_check_catches_a_rank_that_differs(tamper):
    results = mp.Manager().dict()
    mp.spawn(_check_masks, args=(2, _free_port(), tamper, results), nprocs=2)
    if tamper:
        assert all("masks differ between training processes" in results[rank] for rank in range(2))
    else:
        assert dict(results) == {0: "agree", 1: "agree"}


@pytest.mark.slow
def test_two_gloo_processes_match_one(tmp_path):
    """``torchrun --nproc-per-node 2 -m mptc.cli train`` against ``mptc train``, same seed."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([BIN / "mptc", *TRAIN, "--out", tmp_path / "one"], env=env, capture_output=True, text=True)
    assert one.returncode == 0, one.stderr
    two = subprocess.run(
        [
            BIN / "torchrun",
            "--nproc-per-node",
            "2",
            "--standalone",
            "-m",
            "mptc.cli",
            *TRAIN,
            "--out",
            tmp_path / "two",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("run written to") == 1  # rank 0 reports; the other rank stays quiet

    run = tmp_path / "two"  # one valid run directory, nothing else in it
    assert sorted(p.name for p in run.iterdir()) == [
        "checkpoint.pt",
        "config.json",
        "metrics.json",
        "ticket.safetensors",
    ]
    parse_config((run / "config.json").read_bytes(), "config.json")
    assert load_checkpoint(run / "checkpoint.pt")["epoch"] == 6
    load_ticket(run / "ticket.safetensors")

    curves = {
        name: [e["test_accuracy"] for e in json.loads((tmp_path / name / "metrics.json").read_text())["history"]]
        for name in ("one", "two")
    }
    gaps = [abs(a - b) for a, b in zip(curves["one"], curves["two"], strict=True)]
    print(
        f"test accuracy per epoch, 1 process: {curves['one']}\n2 gloo processes: {curves['two']}\nlargest gap {max(gaps):.4f}"
    )
    assert max(gaps) <= 0.03 and abs(curves["one"][-1] - curves["two"][-1]) <= 0.015
