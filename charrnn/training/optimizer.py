"""The optimizer, the learning-rate schedule and the step limit a config implies."""

from __future__ import annotations

import math

import torch

from charrnn.config import Config
from charrnn.data.corpus import default_cache_dir, open_corpus, resolve_data_paths  # noqa: F401  (train's API)


def build_optimizer(cfg: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    t = cfg.train
    params = list(model.parameters())
    if t.optimizer in ("adamw", "adam"):
        # The fused kernel updates every parameter in one pass (CPU and CUDA): for small models the optimizer
        # step is a visible share of the step time.
        cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
        fused = params[0].device.type in ("cpu", "cuda")
        return cls(params, lr=t.lr, weight_decay=t.weight_decay, fused=fused or None)
    if t.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=t.lr, weight_decay=t.weight_decay)
    return torch.optim.SGD(params, lr=t.lr, momentum=0.9, weight_decay=t.weight_decay)


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
        return t.lr_step_gamma ** math.floor(progress / t.lr_step_every)
    return 1.0


def total_steps_for(cfg: Config, train_chars: int) -> int | None:
    """The step limit implied by max_steps and max_epochs (the smaller); None under a pure time budget."""
    limits = []
    if cfg.train.max_steps is not None:
        limits.append(cfg.train.max_steps)
    if cfg.train.max_epochs is not None:
        per_step = cfg.train.batch_size * cfg.train.seq_length
        limits.append(max(1, math.ceil(cfg.train.max_epochs * train_chars / per_step)))
    return min(limits) if limits else None
