"""torch.distributed glue: one process per device under torchrun, rank 0 does all the writing.

Every collective here must be reached by all ranks at the same step; the training loop only calls them
under conditions that are the same on every rank (step counts, and flags agreed through `step_sync`).
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as torch_dist

from charrnn.errors import UserError
from charrnn.model import select_hidden

T = TypeVar("T")


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

    def main_decides(self, check: Callable[[], object]) -> None:
        """Run a check on rank 0 only (say, that the run folder may be used); a UserError it raises is raised on
        every rank with the same one line, so no rank is left waiting in a collective for one that refused."""
        error = None
        if self.is_main:
            try:
                check()
            except UserError as exc:
                error = str(exc)
        if self.world_size > 1:
            box = [error]
            torch_dist.broadcast_object_list(box, src=0)
            error = box[0]
        if error is not None:
            raise UserError(error)

    def node_first(self, work: Callable[[], T]) -> T:
        """Run work on each node's first process, then on the others: a cache it fills is written once."""
        if self.local_rank != 0:
            self.barrier()
        result = work()
        if self.local_rank == 0:
            self.barrier()
        return result

    def step_sync(self, loss: torch.Tensor, grad_norm: torch.Tensor, *flags: bool) -> tuple[float, float, list[bool]]:
        """The global-batch mean of the per-rank losses, the gradient norm (the same on every rank: the gradients
        are all-reduced) and each flag or-ed over the ranks, in one transfer from the device (one collective):
        every rank logs the same loss and stops (signal, time budget, non-finite loss) at the same step."""
        values = torch.cat([loss.detach().double().reshape(1), grad_norm.detach().double().reshape(1),
                            torch.tensor(flags, dtype=torch.float64).to(loss.device, non_blocking=True)])
        if self.world_size > 1:
            torch_dist.all_reduce(values)  # sum; every rank holds the same number of rows, so sum / N is the mean
        total, norm, *raised = values.tolist()
        return total / self.world_size, norm / self.world_size, [r > 0 for r in raised]

    def max_over_ranks(self, *values: float) -> list[float]:
        """Each value's maximum over the ranks, in one collective (the values themselves when alone)."""
        if self.world_size == 1:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64)  # a CPU tensor: gloo, also beside NCCL
        torch_dist.all_reduce(tensor, op=torch_dist.ReduceOp.MAX)
        return tensor.tolist()

    def any_rank(self, flag: bool) -> bool:
        """Whether the flag is set on any rank (every rank must call this at the same point)."""
        return self.max_over_ranks(float(flag))[0] > 0

    def gather_objects(self, obj) -> list:
        """Every rank's obj, in rank order (a collective: all ranks call it at the same point)."""
        if self.world_size == 1:
            return [obj]
        parts: list = [None] * self.world_size
        torch_dist.all_gather_object(parts, obj)
        return parts

    def rank_rows(self, hidden):
        """This rank's rows (dimension 1) of a global-batch hidden state: the inverse of gather_rows."""
        if hidden is None or self.world_size == 1:
            return hidden
        rows = (hidden[0] if isinstance(hidden, tuple | list) else hidden).size(1)
        per_rank = rows // self.world_size
        return select_hidden(hidden, slice(self.rank * per_rank, (self.rank + 1) * per_rank))

    def gather_rows(self, hidden):
        """A per-rank hidden state (L, B/N, H) (or an (h, c) pair) -> the global batch's (L, B, H), rank order."""
        if self.world_size == 1 or hidden is None:
            return hidden
        if isinstance(hidden, tuple | list):
            return tuple(self.gather_rows(h) for h in hidden)
        parts = [torch.empty_like(hidden) for _ in range(self.world_size)]
        torch_dist.all_gather(parts, hidden.contiguous())
        return torch.cat(parts, dim=1)


_CONTEXT: DistContext | None = None


def context() -> DistContext:
    """The process group of this run, set up once from torchrun's environment (WORLD_SIZE, RANK, ...)."""
    global _CONTEXT
    if _CONTEXT is None:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size > 1 and not torch_dist.is_initialized():
            # Collectives go by the tensors' device: NCCL for CUDA tensors, gloo for CPU ones (--device cpu).
            backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
            torch_dist.init_process_group(backend=backend)
            atexit.register(_shutdown)
        _CONTEXT = DistContext(
            rank=int(os.environ.get("RANK", "0")), world_size=world_size,
            local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        )
    return _CONTEXT


def _shutdown() -> None:
    if torch_dist.is_initialized():
        torch_dist.destroy_process_group()
