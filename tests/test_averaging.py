"""train.ema: the run evaluates, checkpoints and samples a moving average of its weights, computed as the
decay says; training goes on with the weights themselves, and a resume restores both."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import one_line_error, tiny_config
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.data.batches import make_batcher
from charrnn.memory import parameter_count, training_memory
from charrnn.model import CharRNN
from charrnn.run.checkpoint import load_checkpoint
from charrnn.training.distributed import DistContext
from charrnn.training.loop import train
from charrnn.training.step import build_step

TEXT = "the quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs. " * 4
runner = CliRunner()


def ema_config(tmp_path, ema=0.8, **train):
    return tiny_config(tmp_path, TEXT, data={"val_fraction": 0.2},
                       model={"cell": "gru", "encoding": "embedding", "embedding_dim": 8, "hidden_size": 16},
                       train={"batch_size": 4, "seq_length": 8, "max_steps": 40, "lr": 0.03, "eval_every": 10,
                              "checkpoint_every": 20, "ema": ema, **train})


def test_the_average_is_the_decayed_sum_of_the_weights_after_each_step(tmp_path):
    cfg = ema_config(tmp_path, ema=0.75)
    ids = torch.randint(0, 20, (500,)).numpy()
    model = CharRNN(20, cfg.model)
    step, _ = build_step(cfg, model, "fp32", DistContext())
    batcher = make_batcher("random", ids, 4, 8, seed=0)
    expected = None
    for _ in range(4):
        step(batcher, None, 0.03)
        weights = [p.detach().clone() for p in model.parameters()]
        expected = weights if expected is None else [0.75 * e + 0.25 * w
                                                     for e, w in zip(expected, weights, strict=True)]
    averaged = list(step.evaluated.parameters())
    assert step.evaluated is not model
    for e, a, w in zip(expected, averaged, model.parameters(), strict=True):
        torch.testing.assert_close(a, e)
        assert not torch.equal(a, w)  # the average lags the weights it follows
    off, _ = build_step(ema_config(tmp_path, ema=None), model, "fp32", DistContext())
    assert off.evaluated is model


def metrics_of(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def eval_loss(run, *args):
    res = runner.invoke(app, ["eval", str(run), "--json", *args])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)["loss"]


def test_checkpoints_evaluations_and_eval_use_the_average_where_it_scores_better(tmp_path):
    run = train(ema_config(tmp_path, ema=0.9, max_steps=120, lr=0.05), quiet=True).run_dir
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    assert last["model"].keys() == last["trained_model"].keys() == last["average_model"].keys()
    assert any(not torch.equal(last["average_model"][k], last["trained_model"][k]) for k in last["model"])
    metrics = metrics_of(run)
    assert all(m["val_loss"] == min(m["val_loss_average"], m["val_loss_weights"]) for m in metrics)
    assert metrics[-1]["val_loss_average"] < metrics[-1]["val_loss_weights"]  # what the average is for
    assert last["scored"] == "average"
    assert all(torch.equal(last["model"][k], last["average_model"][k]) for k in last["model"])
    best = min(metrics, key=lambda m: m["val_loss"])
    # best.pt's model is what the evaluation during training scored: the average
    assert eval_loss(run) == pytest.approx(best["val_loss"], abs=1e-5)
    assert eval_loss(run, "--checkpoint", "last") == pytest.approx(metrics[-1]["val_loss"], abs=1e-5)


def test_where_the_weights_score_better_than_their_average_the_run_keeps_the_weights(tmp_path):
    """An average lags a model that is still improving: early in a run at a slow decay the weights score better,
    and then they are what best.pt holds, what eval scores and what the record calls val_loss."""
    run = train(ema_config(tmp_path, ema=0.99, max_steps=20), quiet=True).run_dir
    metrics = metrics_of(run)
    assert all(m["val_loss_weights"] < m["val_loss_average"] for m in metrics)
    assert [m["val_loss"] for m in metrics] == [m["val_loss_weights"] for m in metrics]
    for name in ("best", "last"):
        saved = load_checkpoint(run / "checkpoints" / f"{name}.pt")
        assert saved["scored"] == "weights"
        assert all(torch.equal(saved["model"][k], saved["trained_model"][k]) for k in saved["model"])
        assert not all(torch.equal(saved["model"][k], saved["average_model"][k]) for k in saved["model"])
    assert eval_loss(run) == pytest.approx(min(m["val_loss"] for m in metrics), abs=1e-5)
    # a resume puts the average back from average_model, not from "model" (here the weights): it goes on exactly
    # as a run that never stopped
    res = runner.invoke(app, ["train", "--resume", "--run-dir", str(run), "--set", "train.max_steps=40", "-q"])
    assert res.exit_code == 0, res.output
    whole = train(ema_config(tmp_path, ema=0.99, max_steps=40), run_dir=tmp_path / "whole", quiet=True).run_dir
    a, b = (load_checkpoint(r / "checkpoints" / "last.pt") for r in (run, whole))
    for key in ("model", "trained_model", "average_model"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key
    assert a["scored"] == b["scored"]


def test_the_console_says_which_of_the_two_scored(tmp_path, capsys):
    train(ema_config(tmp_path, ema=0.99, max_steps=10), quiet=False)
    assert "(weights; average " in capsys.readouterr().err


def test_the_average_beats_the_weights_on_a_small_text_seen_many_times(tmp_path):
    """What it is for: at a high learning rate the weights of one step jitter; their average scores better."""
    with_average = train(ema_config(tmp_path, ema=0.9, max_steps=120, lr=0.05), run_dir=tmp_path / "a", quiet=True)
    without = train(ema_config(tmp_path, ema=None, max_steps=120, lr=0.05), run_dir=tmp_path / "b", quiet=True)
    assert with_average.val.loss < without.val.loss


def test_the_memory_estimate_counts_the_average(tmp_path):
    cfg = ema_config(tmp_path)
    off = ema_config(tmp_path, ema=None)
    extra = training_memory(cfg, 30).weights - training_memory(off, 30).weights
    assert extra == parameter_count(30, cfg.model) * 4  # one fp32 copy of the weights


def test_train_ema_cannot_change_on_resume(tmp_path):
    run = train(ema_config(tmp_path, max_steps=10), quiet=True).run_dir
    res = runner.invoke(app, ["train", "--resume", "--run-dir", str(run), "--set", "train.ema=null",
                              "--set", "train.max_steps=12", "-q"])
    one_line_error(res, "cannot resume with train.ema=None", "trained with 0.8")
