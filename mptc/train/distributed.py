"""Multi-process training on PyTorch's own engine: ``torchrun`` starts the processes, DDP keeps them in step.

``torchrun --nproc-per-node N -m mptc.cli train ...`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``
and the rendezvous address in each process's environment; :func:`join` reads them and joins the
process group (NCCL on GPUs, one per process; gloo on CPUs). Alone, :func:`join` returns a
one-process :class:`World` whose every method is the single-process behaviour, so the training
loop has one code path.

What stays as in one process, and why:

* Data order: each epoch's order is still ``randperm`` of the seeded epoch generator, and
  rank ``r`` takes every ``N``-th sample from ``r`` (``DistributedSampler``'s rule: the order is
  padded by wrapping around to a multiple of ``N``). Each rank steps on ``batch_size / N``
  samples and DDP averages the gradients, so one step sees ``batch_size`` samples, as alone.
* Masks: they are a function of the scores, which DDP keeps identical; :meth:`World.check_masks_agree`
  all-reduces a checksum of every mask after training and fails loudly if any rank differs.
* BatchNorm: on GPUs converted to ``SyncBatchNorm``, so batch statistics are over the whole
  step's batch. PyTorch has no ``SyncBatchNorm`` on CPU: there each rank normalises with its own
  slice's statistics (``batch_size / N`` samples) and the running statistics are rank 0's (DDP
  broadcasts buffers each step). With that, float summation order, the few samples repeated
  by the padding and augmentation (every rank draws the same crops and flips for its own
  images), the accuracy curve matches one process within noise, not bit for bit.
* Files: only rank 0 writes the run directory; the others wait at a barrier at the end, so
  when ``torchrun`` returns, the directory is one complete run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

from mptc.data import DataSplit
from mptc.errors import UnsupportedError, VerificationError
from mptc.nn.layers import masked_layers


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (alone: rank 0 of 1)."""

    device: torch.device
    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        """Whether this process writes the run directory."""
        return self.rank == 0

    def batches(
        self, split: DataSplit, batch_size: int, shuffle: torch.Generator, min_size: int = 1
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """This rank's mini-batches of the epoch whose order ``shuffle`` draws (``min_size``:
        :meth:`DataSplit.batches`)."""
        if self.size == 1:
            return split.batches(batch_size, shuffle, min_size)
        if batch_size % self.size:
            raise UnsupportedError(f"--batch-size {batch_size} does not split evenly over {self.size} processes")
        order = torch.randperm(len(split), generator=shuffle)
        padded = torch.cat([order, order[: -len(order) % self.size]])  # wrap around to a multiple of size
        mine = padded[self.rank :: self.size]
        return DataSplit(split.x[mine], split.y[mine]).batches(batch_size // self.size, min_size=min_size)

    def wrap(self, model: nn.Module) -> nn.Module:
        """``model`` to call in training steps: DDP (alone: ``model`` itself).

        On GPUs, BatchNorm layers of ``model`` are replaced in place by ``SyncBatchNorm`` sharing
        their parameters and buffers, so ``model``'s state dict, optimizer and ticket stay as they were.
        """
        if self.size == 1:
            return model
        if self.device.type != "cuda":
            return nn.parallel.DistributedDataParallel(model)
        nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return nn.parallel.DistributedDataParallel(model, device_ids=[self.device.index])

    def sum(self, *values: float) -> list[float]:
        """Each value summed over all ranks (alone: unchanged)."""
        if self.size == 1:
            return list(values)
        totals = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(totals)
        return totals.tolist()

    def check_masks_agree(self, model: nn.Module) -> None:
        """Raise :class:`VerificationError` unless every rank holds the same masks.

        The checksum of a mask is the dot product of its bits with position weights
        ``1 + i mod 65521``: a flipped or moved bit changes it. All-reduced MAX and MIN differ
        exactly when some rank's checksum does.
        """
        if self.size == 1:
            return
        layers = list(masked_layers(model))
        if not layers:
            return
        sums = []
        for _, layer in layers:
            bits = layer.mask().detach().reshape(-1).to(torch.float64)
            sums.append(bits @ (1 + torch.arange(bits.numel(), device=bits.device, dtype=torch.float64) % 65521))
        high = torch.stack(sums).to(self.device)
        low = high.clone()
        dist.all_reduce(high, op=dist.ReduceOp.MAX)
        dist.all_reduce(low, op=dist.ReduceOp.MIN)
        differ = [name for (name, _), hi, lo in zip(layers, high.tolist(), low.tolist()) if hi != lo]
        if differ:
            raise VerificationError(f"masks differ between training processes in {', '.join(differ)}")

    def finish(self) -> None:
        """Wait until every rank (rank 0: its writes) is done, then leave the process group."""
        if self.size > 1:
            dist.barrier()
            dist.destroy_process_group()


def join(device: torch.device) -> World:
    """This process's :class:`World`, from the environment ``torchrun`` sets (alone: none set).

    Joins the default process group: NCCL when ``device`` is CUDA (this process then uses GPU
    ``LOCAL_RANK``), gloo otherwise.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World(device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(
            "nccl" if device.type == "cuda" else "gloo",
            rank=rank,
            world_size=size,
            device_id=device if device.type == "cuda" else None,
        )
    return World(device, rank, size)
