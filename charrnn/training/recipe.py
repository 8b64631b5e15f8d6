"""The recipe that follows a run's width and its passes over the text: what every `auto` besides
`model.hidden_size` becomes once the width is known (dropout and lr from the width; dropout, weight decay,
batching, the moving average and the steps between evaluations from the passes over the training text the
budget buys, and the run's length). `autosize` picks the width; `with_width` fills in the rest. Every
number below was measured: docs/choosing-the-width.md has the runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from charrnn.config import Config, is_auto

# (width, value) anchors from the measured runs; between them linear, outside them the nearest end.
DROPOUT_BY_WIDTH = ((192, 0.0), (256, 0.1), (320, 0.15), (384, 0.2), (512, 0.2))
# (passes over the training text in the budget, dropout): a small corpus is seen many times and overfits. Measured
# at 100 s on a 2x192 LSTM (docs/choosing-the-width.md), best val without dropout / 0.2 / 0.35: names.txt (14-22
# passes) 1.556 / 1.431 / 1.429; 300 KB of Python (9-16) 2.314 / 2.152 / 2.074; 237 KB of licences (12-20) 1.576
# / 1.383 / 1.413; tinyshakespeare (4 passes) is best without.
DROPOUT_BY_PASSES = ((4, 0.0), (8, 0.2), (16, 0.3))
# Passes over the training text from which `batching: auto` reads random windows rather than stateful streams.
# Measured at 100 s (docs/choosing-the-width.md), stateful against random: tinyshakespeare (6 passes) 1.434 / 1.482,
# 300 KB of Python (18) 2.001 / 2.070, 237 KB of licences (21) 1.421 / 1.440, names.txt (27) 1.392 / 1.397; 100 KB of
# Shakespeare (74-111) 1.480 / 1.446: windows that start anywhere win only on a text seen dozens of times.
RANDOM_BATCHES_FROM_PASSES = 40.0
# Passes over the training text from which `ema: auto` evaluates a moving average of the weights, and the share of
# the run's steps it averages over (decay 1 - 1/(share x steps): 0.998 for a 4,000-step run). On a text seen ten
# times and more the val loss of the weights jumps between evaluations and creeps up after its best while the
# average's stays near it. Measured at 100 s on a 2-core AVX2 EPYC, without / with: 300 KB of Python (10-11
# passes) 2.094 / 2.033, licences (12-14) 1.516 / 1.419, names.txt (13-14) 1.411 / 1.421; tinyshakespeare at
# 600 s (7 passes) 1.4250 / 1.4238; at 100 s on a Xeon (6 passes) an average over a twelfth of the run cost 0.005,
# lagging a model still improving as the learning rate anneals (docs/choosing-the-width.md).
EMA_FROM_PASSES = 10.0
EMA_SHARE_OF_RUN = 0.125
# (passes over the training text, AdamW's weight decay) for `weight_decay: auto`: 0.1, the Shakespeare recipe's
# (docs/quality.md), up to 13 passes, 0.3 from 17. Measured at 100 s on a 2-core AVX-512 BF16 EPYC with the width
# auto picks (2x192, 16 to 32 passes), means of three seeds, 0.1 / 0.3: names.txt 1.3814 / 1.3594, 300 KB of
# Python 2.0445 / 2.0114, licences 1.3885 / 1.3709 (docs/choosing-the-width.md).
WEIGHT_DECAY_BY_PASSES = ((13, 0.1), (17, 0.3))
# Steps between evaluations for `eval_every: auto`: about EVALUATIONS_PER_RUN a run, in multiples of 250 from 500
# to 1,000 (500 for tinyshakespeare's 4,400 steps at 100 s, the Shakespeare recipe's; 1,000 for its 10,000 to
# 12,000 at 600 s). From EMA_FROM_PASSES passes over the training text on, at most about EVAL_EVERY_PASSES passes
# apart, down to 250: a text seen that often passes its best val loss and rises 0.02 to 0.07 in the 2,000 steps
# patience 4 waits at 500; at 250 (1.2 passes over 237 KB of licences), with patience_from 0.5, 100 s and 30 s
# runs end within 0.033 of their best (2-core AVX-512 BF16 EPYC; seeds of names.txt, licences, 300 KB of Python).
# At 600 s the same texts are seen 30 times, and evaluations 5 passes apart (1,000 steps) kept a best of few:
# licences 1.3637 (mean of three seeds) against 1.3404 at 250 (docs/choosing-the-width.md).
EVALUATIONS_PER_RUN, EVAL_EVERY_PASSES, EVAL_EVERY_STEPS = 10, 1.25, (250, 500, 1000)
LR_BY_WIDTH = ((128, 0.01), (160, 0.008), (192, 0.007), (256, 0.006), (320, 0.005), (384, 0.0045), (512, 0.004))


def _interpolate(anchors: Sequence[tuple[int, float]], width: int) -> float:
    widths = [w for w, _ in anchors]
    return float(np.interp(width, widths, [v for _, v in anchors]))


def dropout_for(width: int, passes: float | None = None) -> float:
    """The dropout for this width (0 at 192 and below, 0.2 from 384) and, where known, this many passes over the
    training text (0 up to 4, 0.2 at 8, 0.3 from 16): the larger of the two."""
    by_passes = _interpolate(DROPOUT_BY_PASSES, passes) if passes is not None else 0.0
    return round(max(_interpolate(DROPOUT_BY_WIDTH, width), by_passes), 2)


def batching_for(passes: float | None) -> str:
    """`batching: auto` for a run that passes over its training text this many times: stateful streams below
    RANDOM_BATCHES_FROM_PASSES (and where the passes are not known), random windows from there."""
    return "random" if passes is not None and passes >= RANDOM_BATCHES_FROM_PASSES else "stateful"


def ema_for(passes: float | None, steps: float | None) -> float | None:
    """`ema: auto` for a run of this many steps that passes over its training text this many times: an average
    over about EMA_SHARE_OF_RUN of its steps from EMA_FROM_PASSES passes on, None (off) below them and where the
    run's length is not known."""
    if passes is None or steps is None or passes < EMA_FROM_PASSES:
        return None
    return round(1 - 1 / max(EMA_SHARE_OF_RUN * steps, 10.0), 4)


def weight_decay_for(passes: float | None) -> float:
    """`weight_decay: auto` for a run that passes over its training text this many times: 0.1 up to 13 passes
    (and where the passes are not known), 0.3 from 17, linear between."""
    return WEIGHT_DECAY_BY_PASSES[0][1] if passes is None else round(_interpolate(WEIGHT_DECAY_BY_PASSES, passes), 2)


def _steps_in_250s(steps: float, low: int, high: int) -> int:
    return int(min(max(250 * round(steps / 250), low), high))


def eval_every_for(passes: float | None, steps: float | None = None) -> int:
    """`eval_every: auto` for a run of this many steps that passes over its training text this many times: about
    EVALUATIONS_PER_RUN evaluations, 500 to 1,000 steps apart (500 where the run's length is not known); from
    EMA_FROM_PASSES passes on, at most about EVAL_EVERY_PASSES passes apart, down to 250 (250 where the run's
    length is not known)."""
    small, usual, large = EVAL_EVERY_STEPS
    every = usual if steps is None else _steps_in_250s(steps / EVALUATIONS_PER_RUN, usual, large)
    if passes is not None and passes >= EMA_FROM_PASSES:
        every = min(every, small if steps is None else _steps_in_250s(EVAL_EVERY_PASSES * steps / passes, small, large))
    return every


def lr_for(width: int) -> float:
    """The AdamW learning rate the measured runs used at this width (1e-2 at 128 down to 4e-3 at 512)."""
    lr = _interpolate(LR_BY_WIDTH, width)
    return float(f"{lr:.2g}")


def with_width(cfg: Config, width: int, chars: float | None = None, train_chars: int | None = None) -> Config:
    """The config with `width` for model.hidden_size and every other auto resolved from it (a tied embedding
    is as wide as the hidden state, so it follows the width too; dropout and what follows the passes follow the
    run's length as well where it is known: `chars` trained on, of a training text of `train_chars`)."""
    m, t = cfg.model, cfg.train
    passes = chars / train_chars if chars is not None and train_chars else None
    steps = chars / (t.batch_size * t.seq_length) if chars is not None else None
    model = dataclasses.replace(
        m, hidden_size=width, embedding_dim=width if is_auto(m.embedding_dim) or m.tie_weights else m.embedding_dim,
        dropout=dropout_for(width, passes) if is_auto(m.dropout) else m.dropout)
    train = dataclasses.replace(t, lr=lr_for(width) if is_auto(t.lr) else t.lr,
                                weight_decay=weight_decay_for(passes) if is_auto(t.weight_decay) else t.weight_decay,
                                batching=batching_for(passes) if is_auto(t.batching) else t.batching,
                                ema=ema_for(passes, steps) if is_auto(t.ema) else t.ema,
                                eval_every=eval_every_for(passes, steps) if is_auto(t.eval_every) else t.eval_every)
    return dataclasses.replace(cfg, model=model, train=train)


# The train settings whose `auto` follows the passes over the training text, in the order messages name them.
PASSES_KEYS = ("batching", "ema", "weight_decay", "eval_every")
