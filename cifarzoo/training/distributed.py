"""Process-group set-up for ``torchrun``: NCCL on CUDA, gloo on CPU, one rank per process."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from cifarzoo.runtime.torch_runner import torch_device


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when usable, else CPU; ``cpu``, ``cuda`` and ``cuda:N`` once checked to exist. Anything else
    (``banana``, ``cuda:7`` on a machine without it) is a one-line error, raised before any file is touched."""
    return torch.device(torch_device(device))


@dataclass
class DistContext:
    """This process's place in the job. A plain ``python`` run is rank 0 of 1, with no process group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_env(cls, device: str = "auto") -> DistContext:
        """Read torchrun's RANK / WORLD_SIZE / LOCAL_RANK and join the process group if there is more than one."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        resolved = resolve_device(device)
        if resolved.type == "cuda" and world_size > 1:
            resolved = torch.device("cuda", local_rank)
            torch.cuda.set_device(resolved)
        if world_size > 1 and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if resolved.type == "cuda" else "gloo")
        return cls(rank, world_size, local_rank, resolved)

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def broadcast_object(self, obj: object) -> object:
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def close(self, *, wait_for_all: bool = False) -> None:
        """Leave the process group. ``wait_for_all`` (on a normal finish) first waits for every rank: rank 0
        hosts the rendezvous store, and a rank tearing down while another still finishes its last collective
        can abort inside gloo ("terminate called without an active exception", seen once in the two-rank
        test). Not after an error: the other ranks may never arrive, and the barrier would hang."""
        if self.distributed and dist.is_initialized():
            if wait_for_all:
                dist.barrier()
            dist.destroy_process_group()
