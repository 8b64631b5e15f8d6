"""The optimizer, the learning-rate schedule and the step limit a config implies."""

from __future__ import annotations

import math

import torch

from charrnn.config import Config


def parameter_groups(cfg: Config, model: torch.nn.Module) -> list[dict]:
    """The parameters in optimizer groups: weight decay on the matrices (and the embedding), none on biases and
    other 1-D tensors, as nanoGPT's configure_optimizers does; train.decay_vectors puts every tensor under decay.
    A bias pulled towards 0 only costs the model an offset it needs."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = cfg.train.weight_decay
    if cfg.train.decay_vectors or not decay:
        return [{"params": params, "weight_decay": decay}]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def build_optimizer(cfg: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    t = cfg.train
    groups = parameter_groups(cfg, model)
    if t.optimizer in ("adamw", "adam"):
        cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
        return _fused_if_supported(cls, groups, lr=t.lr)
    if t.optimizer == "rmsprop":
        return torch.optim.RMSprop(groups, lr=t.lr)
    return torch.optim.SGD(groups, lr=t.lr, momentum=0.9)


def _fused_if_supported(cls, groups: list[dict], **options) -> torch.optim.Optimizer:
    """The fused kernel updates every parameter in one pass: for small models the optimizer step is a visible
    share of the step time. It covers CUDA, and the CPU from torch 2.4 on; where the installed torch has no fused
    kernel for the parameters' device, the constructor refuses, and the default (foreach) implementation is used."""
    device = groups[0]["params"][0].device.type
    if device in ("cpu", "cuda"):
        try:
            return cls(groups, fused=True, **options)
        except RuntimeError:  # e.g. torch 2.3 on CPU: "`fused=True` requires all the params to be ... CUDA"
            pass
    return cls(groups, **options)


def lr_factor(cfg: Config, step: int, progress: float) -> float:
    """Multiplier of the base LR at a step; progress in [0, 1] is the fraction of the run done
    (by steps, or by time under a time budget), so the schedule stretches over either."""
    t = cfg.train
    if step < t.warmup_steps:
        return (step + 1) / t.warmup_steps
    progress = min(max(progress, 0.0), 1.0)
    if t.lr_schedule == "cosine":
        return t.min_lr_ratio + (1 - t.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    if t.lr_schedule == "step":
        return t.lr_step_gamma ** step_drops(progress, t.lr_step_every)
    return 1.0


_NO_LIMIT = 2**62  # max_epochs: 1e306 means no limit in practice (and would overflow an integer's float)


def step_drops(progress: float, every: float) -> int:
    """How many times the step schedule has cut the LR at this fraction of the run: at every, 2 x every, ...,
    but not in the last half interval, where a cut would come too late to matter (0.33: at 1/3 and 2/3 only)."""
    last = math.floor((1.0 - every / 2) / every + 1e-9)
    return min(math.floor(progress / every + 1e-9), last)


def total_steps_for(cfg: Config, train_chars: int) -> int | None:
    """The step limit implied by max_steps and max_epochs (the smaller); None under a pure time budget."""
    limits = []
    if cfg.train.max_steps is not None:
        limits.append(cfg.train.max_steps)
    if cfg.train.max_epochs is not None:
        steps = cfg.train.max_epochs * steps_per_epoch(cfg, train_chars)
        limits.append(max(1, math.ceil(steps - 1e-9)) if steps < _NO_LIMIT else _NO_LIMIT)
    return min(limits) if limits else None


def step_limit_key(cfg: Config, total_steps: int) -> str:
    """Which setting total_steps_for's limit comes from: "max_steps", or "max_epochs" where that is smaller."""
    return "max_steps" if cfg.train.max_steps == total_steps else "max_epochs"


def steps_per_epoch(cfg: Config, train_chars: int) -> float:
    """Steps in one pass over the training text: stateful batching reads its streams' whole batches once
    (what ContiguousStreams calls an epoch); random windows count characters."""
    t = cfg.train
    if t.batching == "stateful":
        return max(1, (train_chars - 1) // t.batch_size // t.seq_length)
    return train_chars / (t.batch_size * t.seq_length)
