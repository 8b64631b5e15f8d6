"""Validation during training: what text is scored at each evaluation, which model (under train.ema the better of
the weights and their average), and when patience runs out.

An evaluation scores the validation split with the same function as `charrnn eval` (evaluate.evaluate). On a
large corpus it scores a fixed sample of the split (train.eval_max_chars: auto): streams spread evenly over all
of it, the same characters every time, so that evaluations stay comparable and cheap beside training;
`charrnn eval` scores the whole split.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from charrnn.config import Config, TrainConfig, is_auto
from charrnn.errors import TrainingFailed
from charrnn.evaluate import Metrics, evaluate
from charrnn.model import CharRNN
from charrnn.training.distributed import DistContext
from charrnn.training.state import TrainState
from charrnn.training.step import TrainingStep

# train.eval_max_chars: auto scores a quarter of the characters trained between two evaluations (scoring runs
# forward only, on larger batches, at 3 to 4 times the training speed on a CPU, so evaluations then take 6 to
# 8% of a run at the default eval_every: docs/scaling.md, benchmarks/eval_share.py) ...
EVAL_SHARE = 0.25
# ... but at least this many (all of a smaller split): the loss of 50,000 characters is known to about 0.01
# nats, and every evaluation scores the same characters, so they compare more finely than that.
EVAL_MIN_CHARS = 50_000


def eval_char_cap(cfg: Config) -> int | None:
    """How many validation characters an evaluation during training scores (None: the whole split)."""
    t = cfg.train  # (eval_every resolved: autosize.with_width)
    if not is_auto(t.eval_max_chars):
        return t.eval_max_chars
    return max(EVAL_MIN_CHARS, int(EVAL_SHARE * t.eval_every * t.batch_size * t.seq_length))


def spent_rule(t: TrainConfig, state: TrainState) -> str | None:
    """The early-stopping rule whose count the state has reached, progress aside: "patience" (train.patience
    evaluations without a better val loss), "patience_rises" (train.patience_rises evaluations in a row that each
    scored worse than the one before), or None."""
    if t.patience and state.evals_since_best >= t.patience:
        return "patience"
    if t.patience_rises and state.evals_rising >= t.patience_rises:
        return "patience_rises"
    return None


def scored_text(splits: dict[str, np.ndarray]) -> np.ndarray:
    """The text evaluations score: the val split, or the training text where val is empty (tiny corpora)."""
    return splits["val"] if len(splits["val"]) >= 2 else splits["train"]


class Validation:
    """The text evaluations score (the val split; the training text when val is empty) and the patience rule."""

    def __init__(self, cfg: Config, splits: dict[str, np.ndarray], device: torch.device, precision: str,
                 dist: DistContext):
        self.ids = scored_text(splits)
        self.name = "val" if self.ids is splits["val"] else "train"
        t = cfg.train
        self.train_cfg = t
        self.device, self.precision, self.dist = device, precision, dist
        self.max_chars = eval_char_cap(cfg)
        self.chars = len(self.ids) - 1 if self.max_chars is None else min(len(self.ids) - 1, self.max_chars)

    def score(self, model: CharRNN, step: int, last_good: str) -> Metrics:
        metrics = evaluate(model, self.ids, batch_size=64, device=self.device, precision=self.precision,
                           max_chars=self.max_chars)
        if not math.isfinite(metrics.loss):
            raise TrainingFailed(f"validation loss is {metrics.loss} at step {step}; last good checkpoint: "
                                 f"{last_good}")
        return metrics

    def score_step(self, step: TrainingStep, at: int, last_good: str) -> tuple[Metrics, dict]:
        """Score the step's model. Under train.ema both the average and the weights as trained, keeping the better
        (the step then samples and checkpoints it): an average lags a model that is still improving, so it must
        not cost where the weights score better. Also returns both losses, for the record."""
        if step.average is None:
            return self.score(step.model, at, last_good), {}
        average = self.score(step.average.module, at, last_good)
        weights = self.score(step.model, at, last_good)
        step.scores_average = average.loss <= weights.loss
        return (average if step.scores_average else weights), {"val_loss_average": average.loss,
                                                              "val_loss_weights": weights.loss}

    def record(self, state: TrainState, metrics: Metrics, stopped_by: str | None,
               progress: float) -> tuple[bool, str | None]:
        """Put an evaluation into the state; returns whether it is the best so far, and why the run stops:
        stopped_by, or "early_stop" once the run is train.patience_from of the way through (progress: the fraction
        done; all ranks agree) and either train.patience evaluations in a row brought no val loss better by more
        than train.patience_min_delta or train.patience_rises in a row each scored worse than the one before."""
        t = self.train_cfg
        rose = state.val is not None and metrics.loss > state.val.loss
        state.val, state.val_step = metrics, state.step
        better = metrics.loss < state.best_val
        gained = metrics.loss < state.best_val - t.patience_min_delta
        state.evals_since_best = 0 if gained else state.evals_since_best + 1
        state.evals_rising = state.evals_rising + 1 if rose else 0
        out_of_patience = spent_rule(t, state) is not None and progress >= t.patience_from
        if stopped_by is None and self.dist.any_rank(out_of_patience):
            stopped_by = "early_stop"
        if better:
            state.best_val, state.best_step = metrics.loss, state.step
        return better, stopped_by
