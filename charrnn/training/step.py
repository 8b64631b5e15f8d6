"""The training step shared by the loop and the width probe."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from charrnn.data.corpus import default_cache_dir, open_corpus, resolve_data_paths  # noqa: F401  (train's API)
from charrnn.device import autocast
from charrnn.model import CharRNN, Hidden


def backward_pass(forward, model: CharRNN, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                  inputs: torch.Tensor, targets: torch.Tensor, hidden: Hidden | None, *, precision: str,
                  grad_clip: float) -> tuple[torch.Tensor, float, Hidden]:
    """The part of a training step that the loop and the width probe (autosize) share: forward under autocast,
    loss, backward (scaled for fp16), unscale and clip. Returns (loss, gradient norm, hidden state after it)."""
    with autocast(inputs.device, precision):
        logits, new_hidden = forward(inputs, hidden)  # (B, T, V)
    loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1))
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    max_norm = grad_clip if grad_clip > 0 else float("inf")
    return loss, float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)), new_hidden
