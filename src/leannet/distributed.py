"""Distributed helpers for runs started by `torchrun`: rank, world, barrier, sums across ranks.

Ground floor (torch only). One process per device; `torchrun` sets RANK, WORLD_SIZE, LOCAL_RANK
and MASTER_ADDR/PORT, and `init_from_env` joins the group (gloo on CPU, nccl on CUDA). Every
helper is a no-op in a single process, so the same code path serves both; nothing here decides
what a run does, only how ranks agree: statistics and metrics are summed over ranks so every
rank ranks the same channels and takes the same decisions, and rank 0 alone writes files.

Samplers shard one seeded permutation *sample by sample* (global batch b, position i goes to
rank i % world): the union of the ranks' batches is exactly the single-process batch, so sums
over a calibration set are the single-process sums and plans come out the same.
"""
from __future__ import annotations

import contextlib
import math
import os
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from leannet import files
from leannet.errors import LeannetError


def launched() -> bool:
    """True when torchrun (or another launcher) started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 when not distributed)."""
    return dist.get_rank() if active() else 0


def world_size() -> int:
    """Number of processes (1 when not distributed)."""
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """True on the process that writes files (rank 0, or the only process)."""
    return rank() == 0


def local_device(device: str | torch.device | None) -> torch.device:
    """The device this process trains on: `device`, None meaning CUDA when present, else the
    CPU; under torchrun a bare `cuda` is this process's own GPU (cuda:LOCAL_RANK)."""
    if device is None or str(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if launched() and dev.type == "cuda" and dev.index is None:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return dev


def init_from_env(device: str | torch.device | None = None, timeout_s: float = 600) -> bool:
    """Join the process group torchrun describes (once); False when not launched by torchrun.

    The backend follows the device: nccl for CUDA, gloo for the CPU.
    """
    if not launched():
        return False
    if active():
        return True
    if not dist.is_available():
        raise LeannetError("this torch build has no torch.distributed; run without torchrun")
    dev = local_device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    try:
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    except (RuntimeError, ValueError) as err:
        raise LeannetError(f"could not join the torchrun process group ({backend}): "
                           f"{str(err).splitlines()[0]}") from None
    return True


def shutdown() -> None:
    """Leave the process group (at the end of a command)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op alone)."""
    if active():
        dist.barrier()


def _comm_device() -> torch.device:
    """Where collective tensors must live: the current GPU under nccl, else the CPU."""
    if active() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_sum(values: torch.Tensor) -> torch.Tensor:
    """The element-wise sum over ranks (float64, on the tensor's own device when it returns)."""
    if not active():
        return values
    home = values.device
    buffer = values.detach().to(_comm_device(), torch.float64).clone()
    dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
    return buffer.to(home)


def all_sum_floats(values: Sequence[float]) -> list[float]:
    """Sum a list of numbers over ranks (float64)."""
    if not active():
        return [float(v) for v in values]
    return all_sum(torch.tensor(list(values), dtype=torch.float64)).tolist()


def broadcast_floats(values: Sequence[float], src: int = 0) -> list[float]:
    """Rank `src`'s numbers on every rank (e.g. a latency measured once, so ranks agree)."""
    if not active():
        return [float(v) for v in values]
    buffer = torch.tensor(list(values), dtype=torch.float64, device=_comm_device())
    dist.broadcast(buffer, src)
    return buffer.cpu().tolist()


def same_everywhere(values: Sequence[float]) -> bool:
    """True when every rank holds the same numbers (a cheap divergence check)."""
    if not active():
        return True
    mine = torch.tensor(list(values), dtype=torch.float64)
    first = torch.tensor(broadcast_floats(values), dtype=torch.float64)
    agree = all_sum(torch.tensor([float(torch.equal(mine, first))]))
    return bool(agree.item() == world_size())


@contextlib.contextmanager
def main_first() -> Iterator[bool]:
    """Rank 0 runs the block first (e.g. writes a cache), the others after it; yields is_main."""
    if not is_main():
        barrier()
    try:
        yield is_main()
    finally:
        if is_main():
            barrier()


class ShardSampler(Sampler[int]):
    """This rank's share of a dataset, sample by sample from one order (no padding, no repeats).

    With `shuffle`, the order is `torch.randperm(n)` from a generator seeded with `seed + epoch`
    (call `set_epoch`); `global_batch` keeps the single-process batches together: within each
    consecutive run of `global_batch` indices, position i goes to rank i % world. Ranks may get
    one sample more or less than each other; evaluation sums, so nothing is counted twice.
    """

    def __init__(self, length: int, *, shuffle: bool = False, seed: int = 0,
                 num_replicas: int | None = None, rank_: int | None = None,
                 limit: int | None = None) -> None:
        self.length = length
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.replicas = num_replicas if num_replicas is not None else world_size()
        self.rank = rank_ if rank_ is not None else rank()
        self.limit = limit  # only the first `limit` indices of the order (a calibration set)

    def set_epoch(self, epoch: int) -> None:
        """A new order each epoch, the same on every rank."""
        self.epoch = epoch

    def order(self) -> list[int]:
        """The whole order before sharding (what a single process would read)."""
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.length, generator=generator).tolist()
        else:
            order = list(range(self.length))
        return order[:self.limit] if self.limit is not None else order

    def __iter__(self) -> Iterator[int]:
        return iter(self.order()[self.rank::self.replicas])

    def __len__(self) -> int:
        total = min(self.length, self.limit) if self.limit is not None else self.length
        return len(range(self.rank, total, self.replicas))


def even_shard_len(length: int, replicas: int) -> int:
    """Samples per rank when every rank must take the same number of steps (training)."""
    return math.ceil(length / replicas)


class TrainShardSampler(ShardSampler):
    """Training shards: every rank takes the same number of samples (DDP needs equal step
    counts), wrapping around the order for the last few, like torch's DistributedSampler."""

    def __iter__(self) -> Iterator[int]:
        order = self.order()
        per_rank = even_shard_len(len(order), self.replicas)
        padded = order + order[:per_rank * self.replicas - len(order)]
        return iter(padded[self.rank::self.replicas])

    def __len__(self) -> int:
        total = min(self.length, self.limit) if self.limit is not None else self.length
        return even_shard_len(total, self.replicas)


def unwrap(model: Any) -> Any:
    """The plain module inside a DistributedDataParallel (or torch.compile) wrapper."""
    inner = getattr(model, "module", None)
    if isinstance(model, torch.nn.parallel.DistributedDataParallel) and inner is not None:
        return unwrap(inner)
    original = getattr(model, "_orig_mod", None)
    return unwrap(original) if original is not None else model


def average_grads(params: Sequence[torch.nn.Parameter]) -> None:
    """Average the gradients of parameters DDP does not own (e.g. a task's loss weights)."""
    if not active():
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad.div_(world_size())


def broadcast_module(module: torch.nn.Module, src: int = 0) -> None:
    """Rank `src`'s parameters and buffers on every rank: after an epoch under DDP, batch-norm
    running statistics were updated by each rank's own last batches; this makes the ranks'
    models identical again, so what follows (evaluation, calibration, planning) agrees."""
    if not active():
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            if tensor.is_contiguous():
                dist.broadcast(tensor.data, src)
            else:  # channels-last weights: collectives need dense rows
                dense = tensor.data.contiguous()
                dist.broadcast(dense, src)
                tensor.data.copy_(dense)


@contextlib.contextmanager
def output_folder(path: str | os.PathLike, force: bool = False,
                  resume_marker: str | None = None) -> Iterator[Path]:
    """`files.output_folder` on rank 0; a private temporary folder on the others, so every rank
    runs the same code (checkpoints, state files) while only rank 0's output is kept. On resume
    the other ranks start from a copy of the run folder rank 0 resumes. At the end every rank
    waits until rank 0 has put its folder in place. Rank 0 starts writing only once every rank
    has its copy: a checkpoint written while another rank copied the folder broke the copy."""
    if not active() or is_main():
        with files.output_folder(Path(path), force, resume_marker) as work:
            barrier()  # the other ranks copy a resumed folder before rank 0 writes in it
            yield work
        barrier()
        return
    with tempfile.TemporaryDirectory(prefix=f"leannet-rank{rank()}-") as scratch:
        work = Path(scratch) / "run"
        if resume_marker is not None:
            found = next((d for d in (Path(path), files.staging_dir(Path(path)))
                          if (d / resume_marker).is_file()), None)
            if found is None:
                raise LeannetError(f"--resume: {path} holds no interrupted run ({resume_marker} "
                                   "missing)")
            shutil.copytree(found, work)
        else:
            work.mkdir()
        barrier()
        yield work
        barrier()
