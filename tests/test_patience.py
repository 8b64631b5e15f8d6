"""Early stopping (`train.patience`): a run stops after N evaluations without a better val loss, and best.pt
holds the best model, which `sample` and `eval` use by default."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, tiny_config
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.evaluate import Metrics
from charrnn.run.checkpoint import load_checkpoint
from charrnn.training.distributed import DistContext
from charrnn.training.loop import train
from charrnn.training.state import TrainState
from charrnn.training.validation import Validation

runner = CliRunner()


def overfitting_config(tmp_path, **train_options):
    """Random letters: nothing carries over from the training text to the held-out quarter, so once the model
    memorises the former its val loss only rises."""
    rng = random.Random(1)
    text = "".join(rng.choice("abcdefgh") for _ in range(800))
    return tiny_config(tmp_path, text, data={"val_fraction": 0.25},
                       model={"encoding": "embedding", "embedding_dim": 16, "hidden_size": 64},
                       train={"seq_length": 16, "batch_size": 16, "lr": 0.02, "eval_every": 5,
                              "checkpoint_every": 100, "max_steps": 1000, **train_options})


def test_an_overfitting_run_stops_by_patience_and_best_pt_holds_the_minimum(tmp_path):
    result = train(overfitting_config(tmp_path, patience=3), quiet=True)
    assert result.stopped_by == "early_stop" and result.step < 1000
    lines = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [line["val_loss"] for line in lines]
    best = losses.index(min(losses))
    assert len(losses) == best + 1 + 3  # three evaluations after the best one, none better
    assert lines[-1]["stopped_by"] == "early_stop" and all("stopped_by" not in line for line in lines[:-1])
    saved = load_checkpoint(result.run_dir / "checkpoints" / "best.pt")
    assert saved["val"]["loss"] == min(losses) == result.best_val_loss
    assert saved["step"] == lines[best]["step"] == saved["best_step"]
    assert load_checkpoint(result.run_dir / "checkpoints" / "last.pt")["step"] == result.step
    res = runner.invoke(app, ["info", str(result.run_dir)])
    assert "finished (stopped by: early stop) at step" in res.stdout
    res = runner.invoke(app, ["eval", str(result.run_dir), "--json"])  # best.pt by default
    assert json.loads(res.stdout)["loss"] == pytest.approx(min(losses), rel=1e-5)


def test_without_patience_the_same_run_goes_on(tmp_path):
    result = train(overfitting_config(tmp_path, max_steps=60), quiet=True)
    assert result.stopped_by == "max_steps" and result.step == 60


def _train_overfitting_on_the_command_line(tmp_path, *sets: str):
    """`charrnn train` on the overfitting text with patience 2 (and these --set values), as a user would."""
    cfg = overfitting_config(tmp_path)
    args = ["train", "--config", str(REPO / "configs" / "ihello.yaml"), "--data", cfg.data.path]
    for setting in (f"log.dir={tmp_path / 'runs'}", "data.val_fraction=0.25", "model.hidden_size=64",
                    "model.encoding=embedding", "model.embedding_dim=16", "train.seq_length=16",
                    "train.batch_size=16", "train.eval_every=5", "train.max_steps=1000", "train.patience=2",
                    "log.sample_every=0", "log.tensorboard=false", *sets):
        args += ["--set", setting]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    return res


def test_the_summary_says_early_stop(tmp_path):
    res = _train_overfitting_on_the_command_line(tmp_path)
    assert "stopped by: early stop (2 evaluations without a better val loss)" in res.stderr


def test_a_time_budget_run_ended_by_max_epochs_says_so(tmp_path):
    """train.max_epochs beside a time budget ends a small text's run long before the budget: the summary names
    that limit, so a run that ended early is not taken for a crash or an early stop, and says when the last
    evaluation was the best (more passes may help) but not when the val loss had turned up."""
    budget = ("train.max_steps=null", "train.time_budget=600", "train.patience=null")
    res = _train_overfitting_on_the_command_line(tmp_path, *budget, "train.max_epochs=2")  # one evaluation
    assert "stopped by: train.max_epochs (2 passes over the training text)" in res.stderr
    assert "s into a 600 s budget; its val loss was still falling" in res.stderr
    (tmp_path / "long").mkdir()
    res = _train_overfitting_on_the_command_line(tmp_path / "long", *budget, "train.max_epochs=100")
    assert "stopped by: train.max_epochs (100 passes over the training text)" in res.stderr
    assert "still falling" not in res.stderr  # random letters learnt by heart: val rose after its best
    (tmp_path / "steps").mkdir()
    res = _train_overfitting_on_the_command_line(tmp_path / "steps", "train.max_steps=6", "train.patience=null")
    assert "stopped by" not in res.stderr  # a run that ends at its max_steps, as asked, needs no word


def test_patience_from_holds_the_stop_until_that_fraction_of_the_run(tmp_path):
    """train.patience_from: 0.2 of a 1,000-step run: the run that stopped early goes on to step 200 (evaluations
    every 5 steps) and stops there, its patience long spent; the same trajectory, so the same best model."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    straight = train(overfitting_config(tmp_path / "a", patience=3), quiet=True)
    assert straight.stopped_by == "early_stop" and straight.step < 200
    held = train(overfitting_config(tmp_path / "b", patience=3, patience_from=0.2), quiet=True)
    assert (held.stopped_by, held.step) == ("early_stop", 200)
    assert held.best_step == straight.best_step and held.best_val_loss == straight.best_val_loss
    lines = [json.loads(line) for line in (held.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == list(range(5, 201, 5))


def _stops(tmp_path: Path, losses: list[float], progress: list[float] | None = None,
           **train_options) -> tuple[int | None, float]:
    """Feed val losses to the patience rule (at these fractions of the run; default all of it): the evaluation
    (1-based) it stops at, or None, and the best kept."""
    cfg = tiny_config(tmp_path, train=train_options)
    ids = np.arange(8)
    validation = Validation(cfg, {"train": ids, "val": ids}, torch.device("cpu"), "fp32", DistContext())
    state = TrainState()
    for n, (loss, done) in enumerate(zip(losses, progress or [1.0] * len(losses), strict=True), 1):
        _, stopped_by = validation.record(state, Metrics(loss, loss, 1.0, 0.5, 7), None, progress=done)
        if stopped_by:
            return n, state.best_val
    return None, state.best_val


def test_gains_under_patience_min_delta_do_not_restart_the_count_but_best_pt_keeps_them(tmp_path):
    """A late run's val loss creeping down by 0.0002 an evaluation is noise: with train.patience_min_delta 0.001
    the three evaluations after 1.9 count as none better and the run stops; best.pt still took 1.8994."""
    losses = [2.0, 1.9, 1.8998, 1.8996, 1.8994, 1.95]
    assert _stops(tmp_path, losses, patience=3) == (None, 1.8994)
    assert _stops(tmp_path, losses, patience=3, patience_min_delta=0.001) == (5, 1.8994)
    steady = [2.0, 1.9, 1.898, 1.896, 1.894, 1.95]  # gains of 0.002: learning, the count restarts
    assert _stops(tmp_path, steady, patience=3, patience_min_delta=0.001) == (None, 1.894)


def test_the_summary_names_the_min_delta(tmp_path):
    res = _train_overfitting_on_the_command_line(tmp_path, "train.patience_min_delta=0.001")
    assert "early stop (2 evaluations without a better val loss by more than 0.001)" in res.stderr


def test_patience_rises_stops_a_climbing_val_loss_and_not_a_noisy_one(tmp_path):
    """train.patience_rises 2: two evaluations in a row that each scored worse than the one before stop the run (a
    model learning its text by heart), where patience 4 would wait two more; a val loss that rises and falls in
    turn, as a noisy one does on its way down, goes on. best.pt keeps the best either way."""
    climbing = [2.0, 1.9, 1.85, 1.86, 1.88, 1.90, 1.93]
    assert _stops(tmp_path, climbing, patience=4) == (7, 1.85)
    assert _stops(tmp_path, climbing, patience=4, patience_rises=2) == (5, 1.85)
    noisy = [2.0, 1.9, 1.95, 1.88, 1.92, 1.87, 1.90, 1.86]
    assert _stops(tmp_path, noisy, patience_rises=2) == (None, 1.86)


def test_patience_rises_waits_for_patience_from(tmp_path):
    """Three rises by 30% of the run do not stop it under patience_from 0.5; the next evaluation, at half, does."""
    losses, progress = [2.0, 2.1, 2.2, 2.3], [0.1, 0.2, 0.3, 0.5]
    assert _stops(tmp_path, losses, progress, patience_rises=2, patience_from=0.5) == (4, 2.0)


def test_the_summary_and_a_resume_name_patience_rises(tmp_path):
    """`charrnn train` stopped by patience_rises says so; `--resume` of that run says it is finished, by which
    rule, and trains nothing."""
    res = _train_overfitting_on_the_command_line(tmp_path, "train.patience=null", "train.patience_rises=2")
    assert "stopped by: early stop (the val loss rose at 2 evaluations in a row after its best)" in res.stderr
    run = next(p for p in (tmp_path / "runs").iterdir() if not p.name.startswith("."))
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["stopped_by"] == "early_stop"
    assert lines[-3]["val_loss"] < lines[-2]["val_loss"] < lines[-1]["val_loss"]
    before = sorted((p, p.stat().st_mtime_ns) for p in run.rglob("*") if p.is_file())
    res = runner.invoke(app, ["train", "--resume", "--run-dir", str(run)])
    assert res.exit_code == 0, res.output
    assert "already finished at step" in res.stderr
    assert "train.patience_rises=2: the val loss rose at 2 evaluations in a row" in res.stderr
    assert sorted((p, p.stat().st_mtime_ns) for p in run.rglob("*") if p.is_file()) == before


BAD_VALUES = [("patience", v) for v in ("0", "-3", "1.5", "soon")] + \
    [("patience_from", v) for v in ("-0.1", "1.5", "half")] + [("patience_min_delta", v) for v in ("-0.1", "small")] + \
    [("patience_rises", v) for v in ("0", "two")]


@pytest.mark.parametrize(("key", "value"), BAD_VALUES)
def test_a_bad_patience_setting_is_one_line_and_no_run_folder(tmp_path, key, value):
    res = runner.invoke(app, ["train", "--config", str(REPO / "configs" / "ihello.yaml"), "--set",
                              f"log.dir={tmp_path / 'runs'}", "--set", f"train.{key}={value}", "-q"])
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1 and f"train.{key}" in res.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(("rule", "count_key"), [({"patience": 3}, "evals_since_best"),
                                                  ({"patience_rises": 3}, "evals_rising")])
def test_a_resumed_run_stops_at_the_step_an_uncut_run_stops(tmp_path, rule, count_key):
    """The count of evaluations without a better val loss (or of rises in a row) survives a resume: cut one
    evaluation before the early stop, the resumed run stops one evaluation later, not three."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    straight = train(overfitting_config(tmp_path / "a", **rule), quiet=True)
    assert straight.stopped_by == "early_stop" and straight.stop_rule == next(iter(rule))
    cut = train(overfitting_config(tmp_path / "b", **rule, max_steps=straight.step - 5), quiet=True)
    assert cut.stopped_by == "max_steps"
    assert load_checkpoint(cut.run_dir / "checkpoints" / "last.pt")[count_key] == 2
    resumed = train(overfitting_config(tmp_path / "b", **rule), run_dir=cut.run_dir, resume=True, quiet=True)
    assert (resumed.stopped_by, resumed.step) == ("early_stop", straight.step)


def test_the_patience_count_is_part_of_the_saved_state():
    """A resumed run goes on counting from where it stopped (a checkpoint carries the count and best step)."""
    from charrnn.training.state import TrainState

    state = TrainState(step=40, best_val=1.5, best_step=25, evals_since_best=2, evals_rising=1, data={}, rng={})
    again = TrainState.from_dict(state.to_dict())
    assert (again.best_step, again.evals_since_best, again.evals_rising) == (25, 2, 1)
    old = {k: v for k, v in state.to_dict().items() if k not in ("best_step", "evals_since_best", "evals_rising")}
    assert (TrainState.from_dict(old).evals_since_best, TrainState.from_dict(old).evals_rising) == (0, 0)  # older
