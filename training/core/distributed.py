"""Several processes under torchrun, for every task: the process group (NCCL on GPUs, gloo on CPUs), the
sampler each rank draws its share from, the DistributedDataParallel wrapper, reductions of the log, and who
writes (rank 0 alone logs, validates and saves). One process without torchrun takes none of these paths."""
from __future__ import annotations

import builtins
import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from ltdeploy.errors import LtDeployError


@dataclass(frozen=True)
class World:
    """This process's rank among `size` processes, and its rank on its own node."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """The process that logs, validates and writes files."""
        return self.rank == 0


def launched() -> bool:
    """True under torchrun (or any launcher that sets WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device: torch.device | None = None) -> World:
    """Join the process group torchrun describes (once per process); World() when not launched by it.

    GPUs get NCCL and the local rank's device; CPUs get gloo and an equal share of the cores, so that N
    processes on one machine do not each start a thread per core."""
    if not launched():
        return World()
    if not dist.is_initialized():
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        cuda = device is not None and device.type == "cuda"
        if cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if cuda else "gloo")
        local_size = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        torch.set_num_threads(max(1, torch.get_num_threads() // local_size))
        if dist.get_rank() != 0:
            _quiet()
    return current_world()


def current_world() -> World:
    """This process's place in the process group it joined (World() when it joined none)."""
    if not dist.is_initialized():
        return World()
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def _quiet() -> None:
    """Ranks other than 0 print nothing and show no progress bars (errors still go to stderr), as
    torchvision's references do."""
    os.environ["TQDM_DISABLE"] = "1"  # tqdm reads it for every bar it makes
    plain = builtins.print

    def print_errors_only(*args, **kwargs) -> None:
        if kwargs.get("file") not in (None, sys.stdout):
            plain(*args, **kwargs)
    builtins.print = print_errors_only


def rank_device(device: torch.device, world: World) -> torch.device:
    """Under torchrun each process takes the GPU of its local rank (`cuda` alone means that one)."""
    if device.type == "cuda" and world.size > 1:
        return torch.device("cuda", world.local_rank)
    return device


def wrap(model: nn.Module, world: World, sync_bn: bool = False, find_unused: bool = False) -> nn.Module:
    """The model DistributedDataParallel-wrapped when there are several processes (itself otherwise)."""
    if world.size == 1:
        return model
    device = next(model.parameters()).device
    if sync_bn:
        if device.type != "cuda":
            raise LtDeployError("--sync-bn needs GPUs (torch's SyncBatchNorm runs on CUDA only)")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused)


def shard_loader(loader: DataLoader, world: World, seed: int) -> DataLoader:
    """The same data, each rank drawing its own 1/size share of a shuffle from (seed, epoch)."""
    if world.size == 1:
        return loader
    sampler = DistributedSampler(loader.dataset, num_replicas=world.size, rank=world.rank, shuffle=True,
                                 seed=seed)
    sharded = DataLoader(loader.dataset, batch_size=loader.batch_size, sampler=sampler,
                         num_workers=loader.num_workers, collate_fn=loader.collate_fn, pin_memory=loader.pin_memory,
                         persistent_workers=loader.num_workers > 0)
    sharded.bad_images = getattr(loader, "bad_images", 0)  # those a preload already left out
    return sharded


def set_epoch(loader: DataLoader, epoch: int) -> None:
    """Tell a sharded loader's sampler which epoch it draws (a no-op for one process)."""
    if hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(epoch)


def reduce_sum(values: list[float], world: World) -> list[float]:
    """Element-wise sums over the ranks (the values themselves for one process)."""
    if world.size == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def any_rank(flag: bool, world: World) -> bool:
    """True on every rank when it is true on one (a stop request seen by some ranks only)."""
    return bool(reduce_sum([float(flag)], world)[0]) if world.size > 1 else flag


def gather(obj, world: World) -> list:
    """Every rank's `obj`, in rank order, on every rank."""
    if world.size == 1:
        return [obj]
    out = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def finish(world: World) -> None:
    """Wait for every rank, then leave the process group."""
    if world.size > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
