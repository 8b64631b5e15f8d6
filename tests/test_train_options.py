"""Training options checked against numbers worked out by hand: the LR schedules (warmup, cosine down to
min_lr_ratio, step), the rmsprop optimizer and max_epochs. Only public functions (`lr_factor`, `train`,
`total_steps_for`), so the tests hold whatever shape the training loop takes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from charrnn.data.batches import ContiguousStreams
from charrnn.data.corpus import open_corpus
from charrnn.run.checkpoint import load_checkpoint
from charrnn.training.loop import train
from charrnn.training.optimizer import lr_factor, total_steps_for

TEXT = "hello world, hello charrnn. " * 4  # 112 characters


def schedule(make_config, **train):
    return make_config(TEXT, train={"lr_schedule": "cosine", "warmup_steps": 0, "min_lr_ratio": 0.1, **train})


def test_warmup_rises_linearly_to_the_full_rate(make_config):
    cfg = schedule(make_config, warmup_steps=4)
    assert [lr_factor(cfg, s, 0.0) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert lr_factor(cfg, 2, 0.9) == 0.75  # warmup wins over the schedule's progress


@pytest.mark.parametrize(("progress", "factor"), [(0.0, 1.0), (0.25, 0.8681980515), (0.5, 0.55), (0.75, 0.2318019485),
                                                  (1.0, 0.1), (1.7, 0.1), (-0.2, 1.0)])
def test_cosine_falls_to_min_lr_ratio(make_config, progress, factor):
    # 0.1 + 0.9 * (1 + cos(pi * p)) / 2, worked out by hand; progress outside [0, 1] is clamped
    assert lr_factor(schedule(make_config), 10, progress) == pytest.approx(factor, abs=1e-9)


@pytest.mark.parametrize(("progress", "factor"), [(0.0, 1.0), (0.24, 1.0), (0.25, 0.5), (0.49, 0.5), (0.5, 0.25),
                                                  (0.99, 0.125), (1.0, 0.125)])  # no cut in the last half interval
def test_step_schedule_multiplies_by_gamma_every_fraction(make_config, progress, factor):
    cfg = schedule(make_config, lr_schedule="step", lr_step_every=0.25, lr_step_gamma=0.5)
    assert lr_factor(cfg, 10, progress) == factor


@pytest.mark.parametrize(("every", "cuts"), [(0.33, [0.33, 0.66]), (0.25, [0.25, 0.5, 0.75]), (0.5, [0.5]),
                                             (0.3, [0.3, 0.6]), (1.0, [])])
def test_step_schedule_never_cuts_in_the_last_half_interval(make_config, every, cuts):
    """0.33 meant thirds, but floor(progress / 0.33) cut a third time at 99% of the run, too late to matter."""
    cfg = schedule(make_config, lr_schedule="step", lr_step_every=every, lr_step_gamma=0.5)
    factors = [lr_factor(cfg, 10, p / 1000) for p in range(1001)]
    found = [p / 1000 for p in range(1, 1001) if factors[p] < factors[p - 1]]
    assert found == cuts


def test_constant_schedule_after_warmup(make_config):
    cfg = schedule(make_config, lr_schedule="constant", warmup_steps=2)
    assert [lr_factor(cfg, s, s / 10) for s in range(4)] + [lr_factor(cfg, 9, 0.9)] == [0.5, 1.0, 1.0, 1.0, 1.0]


def test_training_applies_the_schedule_by_step(make_config):
    """The learning rate a run logs is base lr x the schedule at that step's progress (step / max_steps):
    the update of step 5 ran at progress 4/10, that of step 10 at 9/10."""
    cfg = schedule(make_config, lr=0.02, warmup_steps=2, max_steps=10, eval_every=5, checkpoint_every=5)
    run = train(cfg, quiet=True).run_dir
    lrs = {line["step"]: line["lr"] for line in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())}
    assert lrs[5] == pytest.approx(0.02 * (0.1 + 0.45 * (1 + math.cos(0.4 * math.pi))), rel=1e-9)  # 0.013781
    assert lrs[10] == pytest.approx(0.02 * (0.1 + 0.45 * (1 + math.cos(0.9 * math.pi))), rel=1e-9)  # 0.002440


def test_rmsprop_trains(make_config):
    cfg = make_config(TEXT, model={"cell": "gru"}, train={"optimizer": "rmsprop", "lr": 0.01, "max_steps": 60,
                                                          "batch_size": 4, "seq_length": 8, "eval_every": 60,
                                                          "checkpoint_every": 60})
    result = train(cfg, quiet=True)
    state = load_checkpoint(result.run_dir / "checkpoints" / "last.pt")
    per_param = list(state["optimizer"]["state"].values())
    assert per_param and all(set(s) == {"step", "square_avg"} for s in per_param)  # RMSprop's own state
    assert result.val.loss < 0.5 * math.log(len(set(TEXT)))  # well below a uniform guess: it learned


@pytest.mark.parametrize(("max_epochs", "max_steps", "steps", "stopped_by"), [
    (1.5, None, 14, "max_epochs"),  # ceil(1.5 x 112 / (2 x 6)) = ceil(14.0) = 14
    (0.5, None, 5, "max_epochs"),  # ceil(4.67) = 5
    (1.5, 3, 3, "max_steps"),  # the smaller limit wins
    (0.01, 50, 1, "max_epochs"),  # at least one step
])
def test_max_epochs_sets_the_number_of_steps(make_config, max_epochs, max_steps, steps, stopped_by):
    cfg = make_config(TEXT, train={"max_epochs": max_epochs, "max_steps": max_steps, "batch_size": 2,
                                   "seq_length": 6, "eval_every": 1000, "checkpoint_every": 1000})
    assert total_steps_for(cfg, len(TEXT)) == steps
    result = train(cfg, quiet=True)
    assert (result.step, result.stopped_by) == (steps, stopped_by)
    assert load_checkpoint(result.run_dir / "checkpoints" / "last.pt")["step"] == steps


def test_max_epochs_beside_a_time_budget_anneals_the_lr_over_the_passes(make_config):
    """configs/shakespeare-10min.yaml's max_epochs: 30 beside its 600 s: a small text's run ends after its passes,
    long before the budget, and the cosine schedule has run its course by then (by steps, the larger fraction),
    rather than stopping at the high learning rate of a few percent of the budget."""
    cfg = schedule(make_config, max_epochs=1.5, max_steps=None, time_budget=600, batch_size=2, seq_length=6,
                   eval_every=7, checkpoint_every=1000)
    result = train(cfg, quiet=True)
    assert (result.step, result.stopped_by) == (14, "max_epochs") and result.elapsed_s < 60
    lrs = [json.loads(line)["lr"] for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    # the rate of the 7th and the 14th step (from 0: 6 and 13 of 14 steps done), as by steps alone
    assert lrs == pytest.approx([cfg.train.lr * lr_factor(cfg, k, k / 14) for k in (6, 13)])
    assert lrs[-1] < 0.12 * cfg.train.lr  # annealed to near the floor (0.1), not at 0.999 of the rate


def test_the_result_reports_the_whole_sessions_speed(make_config):
    """RunResult.chars_per_sec is every character trained over the session's clock, evaluations included, not
    the rate of the last window between evaluations (a few steps beside the final evaluation and checkpoint)."""
    cfg = make_config(TEXT * 40, data={"val_fraction": 0.5},  # evaluating 2,240 characters outweighs a step
                      train={"max_steps": 20, "batch_size": 2, "seq_length": 6, "eval_every": 2,
                             "checkpoint_every": 2})
    result = train(cfg, quiet=True)
    assert result.chars_per_sec == pytest.approx(20 * 2 * 6 / result.elapsed_s, rel=0.02)


def test_max_epochs_with_stateful_batching_stops_at_the_end_of_the_streams(make_config):
    """Stateful batching reads its B streams' whole batches once an epoch: one epoch is exactly that many steps.
    Counting characters instead ran one step into the next epoch (981 steps against 980 on tinyshakespeare at
    B = T = 32), resetting the hidden state for it."""
    cfg = make_config(TEXT * 3, train={"batching": "stateful", "max_epochs": 1, "max_steps": None, "batch_size": 2,
                                       "seq_length": 6,
                                       "eval_every": 1000, "checkpoint_every": 1000})
    corpus = open_corpus(cfg)
    n_train = len(corpus.splits(cfg.data.val_fraction, cfg.data.test_fraction)["train"])
    batcher = ContiguousStreams(np.zeros(n_train, dtype=np.uint8), 2, 6)
    assert total_steps_for(cfg, n_train) == batcher.batches_per_epoch < math.ceil(n_train / 12)
    result = train(cfg, quiet=True)
    assert result.step == batcher.batches_per_epoch
    state = load_checkpoint(result.run_dir / "checkpoints" / "last.pt")
    assert state["data"] == {"position": batcher.batches_per_epoch, "epoch": 0}  # not a step into epoch 1


# -- the optimizer ---------------------------------------------------------------------------------------------

def test_weight_decay_is_on_matrices_only_unless_decay_vectors(make_config):
    """Issue 21, item 2: biases were decayed too (one group). Matrices and the embedding decay; biases do not."""
    from charrnn.model import CharRNN
    from charrnn.training.optimizer import build_optimizer

    cfg = make_config("hello world " * 20, model={"encoding": "embedding", "embedding_dim": 4},
                      train={"optimizer": "adamw", "weight_decay": 0.1})
    model = CharRNN(8, cfg.model)
    groups = build_optimizer(cfg, model).param_groups
    decayed = {id(p) for g in groups if g["weight_decay"] == 0.1 for p in g["params"]}
    for name, p in model.named_parameters():
        assert (id(p) in decayed) == (p.dim() >= 2), name
    assert any("bias" in name for name, _ in model.named_parameters())
    cfg.train.decay_vectors = True
    (group,) = build_optimizer(cfg, model).param_groups
    assert group["weight_decay"] == 0.1 and len(group["params"]) == len(list(model.parameters()))


def test_a_torch_without_fused_cpu_adamw_falls_back(make_config, monkeypatch):
    """Issue 21, item 6: fused AdamW on CPU needs torch 2.4; on an older torch the constructor refuses it, and
    charrnn takes the default implementation instead of failing."""
    import torch

    from charrnn.model import CharRNN
    from charrnn.training.optimizer import build_optimizer

    real = torch.optim.AdamW

    class OldAdamW(real):
        def __init__(self, params, fused=None, **kw):
            if fused:
                raise RuntimeError("`fused=True` requires all the params to be floating point Tensors of supported "
                                   "devices: ['cuda']")
            super().__init__(params, **kw)

    cfg = make_config("hello world " * 20, train={"optimizer": "adamw"})
    model = CharRNN(8, cfg.model)
    assert build_optimizer(cfg, model).defaults["fused"]  # this torch has it
    monkeypatch.setattr(torch.optim, "AdamW", OldAdamW)
    optimizer = build_optimizer(cfg, model)
    assert isinstance(optimizer, OldAdamW) and not optimizer.defaults["fused"]
