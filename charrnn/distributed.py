"""torch.distributed glue: one process per device under torchrun, rank 0 does all the writing."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, requested: torch.device) -> torch.device:
        """Under torchrun each process takes its own GPU (LOCAL_RANK); CPU stays CPU."""
        if self.world_size > 1 and requested.type == "cuda":
            torch.cuda.set_device(self.local_rank)
            return torch.device("cuda", self.local_rank)
        return requested

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        if self.world_size == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        device = next(model.parameters()).device
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def barrier(self) -> None:
        if self.world_size > 1:
            torch_dist.barrier()


_CONTEXT: DistContext | None = None


def context() -> DistContext:
    """The process group of this run, set up once from torchrun's environment (WORLD_SIZE, RANK, ...)."""
    global _CONTEXT
    if _CONTEXT is None:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size > 1 and not torch_dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            torch_dist.init_process_group(backend=backend)
        _CONTEXT = DistContext(
            rank=int(os.environ.get("RANK", "0")), world_size=world_size,
            local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        )
    return _CONTEXT
