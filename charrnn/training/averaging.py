"""`train.ema`: an exponential moving average of the weights, which the run evaluates, checkpoints and samples.

On a small text the weights of one step overfit and jitter: the val loss of the model as trained jumps from one
evaluation to the next, and the best one is partly luck. The average of the weights over the last few hundred
steps (decay 0.998: each step's weights count 0.2%) scores better and moves smoothly (docs/choosing-the-width.md).
But an average lags a model that is still improving, so each evaluation scores both (Validation.score_step) and the
better is what the checkpoint's "model" holds: `sample`, `eval`, `export` and fine-tuning use it unchanged.
Training itself goes on with the weights the optimizer updates; checkpoints keep both sets for --resume. torch's
own AveragedModel keeps the average (one foreach update a step).
"""

from __future__ import annotations

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def weight_average(model: torch.nn.Module, decay: float | None) -> AveragedModel | None:
    """An average of model's weights to update after every step, or None where train.ema is off."""
    if not decay:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=False)


def restore_average(average: AveragedModel, weights: dict, steps: int) -> None:
    """Put a checkpoint's averaged weights back, averaged over `steps` updates so far (0: it starts afresh)."""
    average.module.load_state_dict(weights)
    average.n_averaged.fill_(steps)
